package vmdef

import (
	"fmt"
	"strconv"
	"strings"
)

// Bounds on what an imported definition may ask for. Past them a value is a
// typo or an attack; refusing it here, naming the key, beats a failure deep
// inside QEMU.
const (
	maxCPUs   = 1024
	maxMemory = 16 << 40 // bytes: 16 TiB
)

const mib = 1 << 20

// checkTextSize refuses a text definition (.vmx, xl.cfg) larger than an XML
// one may be: the same bound for every format.
func checkTextSize(source string, data []byte) error {
	if len(data) > MaxXMLSize {
		return fmt.Errorf("%s: larger than %d bytes; a definition is never that big", source, MaxXMLSize)
	}
	return nil
}

// parseCPUs reads a CPU count stated as key = value. 0 reads as "not
// stated", like an absent key.
func parseCPUs(source, key, value string) (int, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %s = %s: not a whole number of CPUs", source, key, clip(value))
	}
	if n < 0 || n > maxCPUs {
		return 0, fmt.Errorf("%s: %s = %d: a guest has at most %d CPUs; correct it in the file", source, key, n, maxCPUs)
	}
	return int(n), nil
}

// parseMemory reads an amount of memory stated as key = value in units of
// unit bytes, and returns it in bytes. 0 reads as "not stated".
func parseMemory(source, key, value string, unit int64) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %s = %s: not a whole number", source, key, clip(value))
	}
	if n < 0 || unit <= 0 || n > maxMemory/unit {
		return 0, fmt.Errorf("%s: %s = %d (in %s): a guest has 0 to 16 TiB of memory; correct it in the file", source, key, n, unitName(unit))
	}
	return n * unit, nil
}

func unitName(unit int64) string {
	switch unit {
	case 1:
		return "bytes"
	case 1 << 10:
		return "KiB"
	case 1 << 20:
		return "MiB"
	case 1 << 30:
		return "GiB"
	case 1 << 40:
		return "TiB"
	}
	return fmt.Sprintf("units of %d bytes", unit)
}
