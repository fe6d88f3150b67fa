package api

import "time"

// Snapshot is one snapshot of a guest's disks; `snapshot list --format
// json` prints an array of them, oldest first.
type Snapshot struct {
	Name      string    `json:"name" yaml:"name"`
	CreatedAt time.Time `json:"createdAt" yaml:"createdAt"`
	// Kind is what the snapshot holds: qcow2-internal (a VM's root disk,
	// inside its image), overlay-upper or rootfs-copy (a container's own
	// tree, copied).
	Kind string `json:"kind" yaml:"kind"`
	// Size is the space the snapshot's copy takes on the host, in bytes;
	// absent when not known (a qcow2 internal snapshot shares its clusters
	// with the live disk).
	Size int64 `json:"size,omitempty" yaml:"size,omitempty"`
	// Running says whether the guest ran (paused or frozen for the moment)
	// when the snapshot was taken.
	Running bool `json:"running" yaml:"running"`
}

// SnapshotCreate is the body of POST /1.0/guests/NAME/snapshots.
type SnapshotCreate struct {
	Name string `json:"name"`
}

// GuestCopy is the body of POST /1.0/guests/NAME/copy: the new guest's name.
type GuestCopy struct {
	Name string `json:"name"`
}
