package qmp

// BlockdevSnapshotInternalSync takes an internal snapshot (qcow2) of one
// disk of a running or paused guest, synchronously: only the image's
// metadata is written. Name the disk by Device (a -drive id or a node
// name). QEMU refuses a name the image already has. Result: none.
type BlockdevSnapshotInternalSync struct {
	Device string `json:"device"`
	Name   string `json:"name"`
}

func (c BlockdevSnapshotInternalSync) qmpCommand() (string, any) {
	return "blockdev-snapshot-internal-sync", c
}

// BlockdevSnapshotDeleteInternalSync deletes an internal snapshot of one
// disk by name, while the guest runs. Result: SnapshotInfo.
type BlockdevSnapshotDeleteInternalSync struct {
	Device string `json:"device"`
	Name   string `json:"name"`
}

func (c BlockdevSnapshotDeleteInternalSync) qmpCommand() (string, any) {
	return "blockdev-snapshot-delete-internal-sync", c
}

// SnapshotInfo describes an internal snapshot.
type SnapshotInfo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// VMStateSize is the size of the saved machine state, 0 for a
	// disk-only snapshot.
	VMStateSize int64 `json:"vm-state-size"`
}
