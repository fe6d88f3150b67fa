package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// printIndented writes the daemon's JSON indented, byte for byte what
// printStructured writes for the decoded value: json.Encoder indents its
// own compact encoding the same way, and the daemon encodes the same
// types with the same package.
func printIndented(w io.Writer, raw []byte) error {
	var out bytes.Buffer
	out.Grow(len(raw) * 3 / 2)
	if err := json.Indent(&out, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("decode the daemon's answer: %w", err)
	}
	out.WriteByte('\n')
	_, err := out.WriteTo(w)
	return err
}

// listRow is what the table of `list` shows of an api.Guest: decoding
// these fields alone skips the rest (confinement, id map, paths), which
// is most of each guest's JSON.
type listRow struct {
	Name   string     `json:"name"`
	Type   string     `json:"type"`
	Class  string     `json:"class"`
	State  string     `json:"state"`
	Arch   string     `json:"arch"`
	CPUs   int        `json:"cpus"`
	Memory int64      `json:"memory"`
	IPv4   []string   `json:"ipv4"`
	Disks  []api.Disk `json:"disks"`
}

// printGuestTable writes the table of `list` from the daemon's JSON.
func printGuestTable(w io.Writer, raw []byte) error {
	var rows []listRow
	if err := json.Unmarshal(raw, &rows); err != nil {
		return fmt.Errorf("decode the daemon's answer: %w", err)
	}
	// tabwriter writes every cell and pad on its own: one write each,
	// were it not buffered.
	out := bufio.NewWriterSize(w, 64<<10)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tCLASS\tSTATE\tIPV4\tCPUS\tMEMORY\tDISK\tARCH")
	for _, g := range rows {
		ip := strings.Join(g.IPv4, ",")
		if ip == "" {
			ip = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", g.Name, g.Type, g.Class, strings.ToUpper(g.State), ip, g.CPUs, humanBytes(g.Memory), diskColumn(g.Disks), g.Arch)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return out.Flush()
}
