package api

// DigestHeader carries the SHA-256 ("sha256:<hex>") of a template's
// archive (GET /1.0/templates/ID/archive), sent before the archive itself
// so that the receiver checks the stream as it reads it.
const DigestHeader = "X-Polyvisor-Digest"
