package guest

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Size is a byte count written the way users write it: 512MiB, 2GiB, 1G.
type Size int64

var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"TB", 1000 * 1000 * 1000 * 1000},
	// Single letters are binary, as in docker and incus: 1G is 1GiB.
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"B", 1},
}

// ParseSize reads "512MiB", "2GiB", "1G", "1.5GiB" or a plain byte count.
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty size: write it like 512MiB or 2GiB")
	}
	number, factor := s, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			number, factor = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.factor
			break
		}
	}
	v, err := strconv.ParseFloat(number, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a size: write it like 512MiB, 2GiB or 1G", s)
	}
	bytes := v * float64(factor)
	if bytes > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return Size(bytes), nil
}

// String writes the size in the largest binary unit that divides it.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		factor int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if int64(s) >= u.factor && int64(s)%u.factor == 0 {
			return fmt.Sprintf("%d%s", int64(s)/u.factor, u.suffix)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalYAML keeps sizes human-readable in guest.yaml.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML accepts the same forms as ParseSize.
func (s *Size) UnmarshalYAML(node *yaml.Node) error {
	v, err := ParseSize(node.Value)
	if err != nil {
		return &valueError{line: node.Line, err: err}
	}
	*s = v
	return nil
}

// valueError carries the line of a bad value so Parse can name its key.
type valueError struct {
	line int
	err  error
}

func (e *valueError) Error() string { return e.err.Error() }
