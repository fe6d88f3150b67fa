package daemon

// Version is the daemon build version.
const Version = "0.1.0"
