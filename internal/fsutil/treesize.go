package fsutil

import (
	"context"
	"fmt"
	"io/fs"
)

// SizeMode says what TreeSize counts for each file.
type SizeMode int

const (
	// Allocated counts the blocks a file takes on the host's file system
	// (st_blocks): what a snapshot or a template costs the host, with
	// sparse and shared-extent files as small as they really are.
	Allocated SizeMode = iota
	// ImageBlocks counts a file's length rounded up to 4 KiB, and one more
	// 4 KiB block for each directory and symlink: what the tree will need
	// once copied into a fresh file system image, where the host's sparse
	// files or compression no longer help.
	ImageBlocks
)

// imageBlock is the block size ImageBlocks rounds to, ext4's default.
const imageBlock = 4096

// TreeSize adds up the space the tree at root takes, in bytes, as mode
// counts it. It walks as WalkOneFS does: symlinks are never followed (a
// guest's link to a big host file costs only the link) and a file system
// mounted inside the tree is left out; a file with several hard links in
// the tree is counted once.
func TreeSize(ctx context.Context, root string, mode SizeMode) (int64, error) {
	var total int64
	seen := map[Inode]bool{}
	err := WalkOneFS(ctx, root, func(e Entry) error {
		if e.HasOtherLinks() {
			if seen[e.Inode()] {
				return nil
			}
			seen[e.Inode()] = true
		}
		switch mode {
		case ImageBlocks:
			total += (e.Info.Size() + imageBlock - 1) / imageBlock * imageBlock
			if e.Info.IsDir() || e.Info.Mode()&fs.ModeSymlink != 0 {
				total += imageBlock // a directory's own block; a long symlink's target
			}
		default:
			total += e.Stat.Blocks * 512
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", root, err)
	}
	return total, nil
}
