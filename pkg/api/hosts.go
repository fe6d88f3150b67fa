package api

import "time"

// VendorHost is a hypervisor another product manages, added with `host
// add`: a vSphere/ESXi host or a libvirt host. Its guests are HOST:NAME.
type VendorHost struct {
	Name string `json:"name" yaml:"name"`
	// Kind is vsphere or libvirt.
	Kind string `json:"kind" yaml:"kind"`
	// URL is as the user gave it, without a password.
	URL         string    `json:"url" yaml:"url"`
	Fingerprint string    `json:"fingerprint,omitempty" yaml:"fingerprint,omitempty"`
	AddedAt     time.Time `json:"addedAt" yaml:"addedAt"`
	// Guests is how many guests the host has; absent with Error, which
	// says why the host could not be reached.
	Guests *int   `json:"guests,omitempty" yaml:"guests,omitempty"`
	Error  string `json:"error,omitempty" yaml:"error,omitempty"`
}

// VendorHostAdd is the body of POST /1.0/hosts.
type VendorHostAdd struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Password is the user's (vSphere) or SASL's (libvirt); it is kept in
	// the daemon's root-only hosts file and never answered back.
	Password string `json:"password,omitempty"`
	// Fingerprint is the SHA-256 of the host's certificate to accept
	// instead of a chain to a trusted authority.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// HostGuests is GET /1.0/hosts/guests: every vendor host's guests, named
// HOST:NAME, and a line for each host that could not be reached.
type HostGuests struct {
	Guests []Guest      `json:"guests"`
	Errors []HostFailed `json:"errors,omitempty"`
}

// HostFailed says why a host's guests are missing from a listing.
type HostFailed struct {
	Host  string `json:"host"`
	Error string `json:"error"`
}

// NIC is one network interface of a vendor host's guest.
type NIC struct {
	MAC     string `json:"mac" yaml:"mac"`
	Network string `json:"network,omitempty" yaml:"network,omitempty"`
	Model   string `json:"model,omitempty" yaml:"model,omitempty"`
}

// GuestMove is the body of POST /1.0/guests/HOST:NAME/move: the vendor
// host's guest becomes a local one.
type GuestMove struct {
	// Name is the local guest's; "" keeps the source's.
	Name     string   `json:"name,omitempty"`
	Networks []string `json:"networks,omitempty"`
	Start    bool     `json:"start,omitempty"`
	// DeleteSource deletes the guest on its host once the local one is made.
	DeleteSource bool `json:"deleteSource,omitempty"`
	// Target moves a guest of this cluster to that member instead.
	Target string `json:"target,omitempty"`
}

// GuestMoved is the result of a move to a cluster member: how it went.
type GuestMoved struct {
	Member string `json:"member"`
	// Mode is live (the guest ran on throughout) or cold (stopped, copied,
	// started); Reason says why a move was cold.
	Mode     string `json:"mode"`
	Reason   string `json:"reason,omitempty"`
	Total    string `json:"total"`
	Downtime string `json:"downtime,omitempty"`
}
