package cli

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

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

// printGuestTable writes the table of `list`; withHost adds the HOST
// column, for a daemon that manages vendor hosts' guests too.
func printGuestTable(w io.Writer, rows []api.GuestSummary, withHost bool) error {
	header := []string{"NAME", "TYPE", "CLASS", "STATE", "IPV4", "CPUS", "MEMORY", "DISK", "ARCH"}
	if withHost {
		header = append([]string{"HOST"}, header...)
	}
	cells := make([]string, 0, len(header)*(len(rows)+1))
	cells = append(cells, header...)
	for _, g := range rows {
		ip := strings.Join(g.IPv4, ",")
		if ip == "" {
			ip = "-"
		}
		if withHost {
			cells = append(cells, cmp.Or(g.Host, g.Member, "local"))
		}
		cells = append(cells, g.Name, g.Type, g.Class, strings.ToUpper(g.State), ip, strconv.Itoa(g.CPUs), humanBytes(g.Memory), diskColumn(g.RootDisk), g.Arch)
	}
	return writeColumns(w, len(header), cells)
}

// writeColumns writes cells, columns to a row, in columns two spaces
// apart as tabwriter does, in one write: at 1,000 rows, tabwriter's
// buffering of each cell took longer than the daemon's answer.
func writeColumns(w io.Writer, columns int, cells []string) error {
	widths := make([]int, columns)
	size := 0
	for i, cell := range cells {
		widths[i%columns] = max(widths[i%columns], utf8.RuneCountInString(cell))
	}
	for _, width := range widths {
		size += width + 2
	}
	var out bytes.Buffer
	out.Grow(size * len(cells) / columns)
	for i, cell := range cells {
		out.WriteString(cell)
		if col := i % columns; col < columns-1 {
			for range widths[col] - utf8.RuneCountInString(cell) + 2 {
				out.WriteByte(' ')
			}
		} else {
			out.WriteByte('\n')
		}
	}
	_, err := out.WriteTo(w)
	return err
}
