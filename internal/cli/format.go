package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"gopkg.in/yaml.v3"
)

// formats lists the values of --format for listings.
var formats = []string{"table", "json", "yaml"}

// checkFormat rejects an unknown --format value with the accepted ones.
func checkFormat(f string, allowed ...string) error {
	for _, a := range allowed {
		if f == a {
			return nil
		}
	}
	return fmt.Errorf("--format %q: use %s", f, strings.Join(allowed, ", "))
}

// printStructured writes v as JSON or YAML.
func printStructured(w io.Writer, format string, v any) error {
	if format == "yaml" {
		// Through JSON first, so YAML keys match the documented JSON names.
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var generic any
		if err := yaml.Unmarshal(data, &generic); err != nil {
			return err
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		return enc.Encode(generic)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// humanBytes writes a byte count in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d%ciB", int64(v), "KMGTPE"[exp])
	}
	return fmt.Sprintf("%.1f%ciB", v, "KMGTPE"[exp])
}
