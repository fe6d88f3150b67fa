// Package idmap maps user and group ids between a container's user namespace
// and the host, and shifts or copies file trees through that map.
package idmap

import "fmt"

// HostBase is the first host id that container id 0 maps to.
const HostBase = 1000000

// Size is the number of ids the container's user namespace maps.
const Size = 65536

// Map is one contiguous id range: container ids 0..Size-1 are host ids HostBase..HostBase+Size-1.
type Map struct {
	HostBase uint32
	Size     uint32
}

// Default returns the map every polyvisor container shares.
func Default() Map {
	return Map{HostBase: HostBase, Size: Size}
}

// ToHost returns the host id that container id maps to.
func (m Map) ToHost(id uint32) (uint32, error) {
	if id >= m.Size || uint64(m.HostBase)+uint64(id) > 1<<32-1 {
		return 0, fmt.Errorf("container id %d is outside the map (0..%d)", id, int64(m.Size)-1)
	}
	return m.HostBase + id, nil
}

// ToContainer returns the container id that host id maps to.
func (m Map) ToContainer(id uint32) (uint32, error) {
	if id < m.HostBase || uint64(id) >= uint64(m.HostBase)+uint64(m.Size) {
		return 0, fmt.Errorf("host id %d is outside the map (%d..%d)", id, m.HostBase, uint64(m.HostBase)+uint64(m.Size)-1)
	}
	return id - m.HostBase, nil
}

// ShiftFunc transforms a file's owner; ShiftTree and CopyTree call it once per inode.
type ShiftFunc func(uid, gid uint32) (uint32, uint32, error)

// ShiftUp returns a ShiftFunc that maps container-owned files to their host ids.
func ShiftUp(m Map) ShiftFunc {
	return func(uid, gid uint32) (uint32, uint32, error) {
		return shiftBoth(uid, gid, m.ToHost)
	}
}

// ShiftDown returns a ShiftFunc that maps host-owned (shifted) files back to container ids.
func ShiftDown(m Map) ShiftFunc {
	return func(uid, gid uint32) (uint32, uint32, error) {
		return shiftBoth(uid, gid, m.ToContainer)
	}
}

func shiftBoth(uid, gid uint32, shiftID func(uint32) (uint32, error)) (uint32, uint32, error) {
	newUID, err := shiftID(uid)
	if err != nil {
		return 0, 0, fmt.Errorf("uid: %w", err)
	}
	newGID, err := shiftID(gid)
	if err != nil {
		return 0, 0, fmt.Errorf("gid: %w", err)
	}
	return newUID, newGID, nil
}
