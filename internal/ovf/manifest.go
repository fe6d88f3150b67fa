package ovf

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"

	"github.com/polyvisor/polyvisor/internal/lazyre"
)

// Algorithm names a digest of a manifest line.
type Algorithm string

// The digests ovftool and VirtualBox write (SHA1 by OVF 1.0 tools,
// SHA256 by current ones, SHA512 on request).
const (
	SHA1   Algorithm = "SHA1"
	SHA256 Algorithm = "SHA256"
	SHA512 Algorithm = "SHA512"
)

// MaxManifestSize bounds a .mf file: a line per file of an appliance.
const MaxManifestSize = 1 << 20

// Digest is one manifest line's digest.
type Digest struct {
	Algorithm Algorithm
	Sum       []byte
}

// Manifest maps the file names a .mf lists to their digests.
type Manifest map[string]Digest

// manifestLine is "SHA256(name)= hex" as ovftool writes it, or
// "SHA256 (name) = hex" as VirtualBox and BSD tools do. The name is
// greedy: it may hold parentheses.
var manifestLine = lazyre.New(`^(SHA1|SHA256|SHA512)\s*\((.*)\)\s*=\s*([0-9a-fA-F]*)$`)

// ParseManifest reads a .mf file. A malformed line, a name that is not a
// plain file name, a digest of the wrong length or a name listed twice is
// an error naming it.
func ParseManifest(data []byte) (Manifest, error) {
	if len(data) > MaxManifestSize {
		return nil, invalidf("manifest: larger than %d bytes; a manifest is a line per file", MaxManifestSize)
	}
	m := Manifest{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		match := manifestLine().FindStringSubmatch(line)
		if match == nil {
			return nil, invalidf("manifest line %d %q: expected SHA256(FILE)= HEX (or SHA1, SHA512)", i+1, truncate(line, 80))
		}
		alg, name, sum := Algorithm(match[1]), match[2], match[3]
		if err := checkPlainName(name); err != nil {
			return nil, invalidf("manifest line %d: %w", i+1, err)
		}
		digest, err := hex.DecodeString(sum)
		if err != nil || len(digest) != alg.size() {
			return nil, invalidf("manifest line %d: %s digest of %q is %d hex digits; it has %d", i+1, alg, name, len(sum), 2*alg.size())
		}
		if _, dup := m[name]; dup {
			return nil, invalidf("manifest line %d: %q is listed twice", i+1, name)
		}
		m[name] = Digest{Algorithm: alg, Sum: digest}
	}
	if len(m) == 0 {
		return nil, invalidf("manifest lists no file")
	}
	return m, nil
}

// size is the digest's length in bytes.
func (a Algorithm) size() int {
	return a.new().Size()
}

func (a Algorithm) new() hash.Hash {
	switch a {
	case SHA1:
		return sha1.New()
	case SHA512:
		return sha512.New()
	}
	return sha256.New()
}

// Hasher computes, while a file is copied through it, the digests a
// manifest may hold for it.
type Hasher struct {
	hashes map[Algorithm]hash.Hash
}

// NewHasher returns a Hasher for the given algorithms; with none, for all
// three (when the manifest is not known yet: it may follow the files).
func NewHasher(algorithms ...Algorithm) *Hasher {
	if len(algorithms) == 0 {
		algorithms = []Algorithm{SHA1, SHA256, SHA512}
	}
	h := &Hasher{hashes: map[Algorithm]hash.Hash{}}
	for _, a := range algorithms {
		h.hashes[a] = a.new()
	}
	return h
}

// Write hashes p; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	for _, x := range h.hashes {
		x.Write(p)
	}
	return len(p), nil
}

// hasherFor returns a Hasher with the algorithm the manifest uses for
// name, or with all three when there is no manifest yet.
func (m Manifest) hasherFor(name string) *Hasher {
	if d, ok := m[name]; ok {
		return NewHasher(d.Algorithm)
	}
	return NewHasher()
}

// Verify checks what h hashed against the manifest's line for name: a
// file the manifest does not list cannot be verified, and is an error.
func (m Manifest) Verify(name string, h *Hasher) error {
	d, ok := m[name]
	if !ok {
		return invalidf("%q is not listed in the manifest: its content cannot be verified", name)
	}
	x, ok := h.hashes[d.Algorithm]
	if !ok {
		return fmt.Errorf("verify %q: its %s digest was not computed", name, d.Algorithm)
	}
	if got := x.Sum(nil); !bytes.Equal(got, d.Sum) {
		return invalidf("%q: %s digest %x does not match the manifest's %x: the file is corrupt or was altered", name, d.Algorithm, got, d.Sum)
	}
	return nil
}

// manifestLineFor formats a line as ovftool writes it.
func manifestLineFor(name string, alg Algorithm, sum []byte) string {
	return fmt.Sprintf("%s(%s)= %x\n", alg, name, sum)
}
