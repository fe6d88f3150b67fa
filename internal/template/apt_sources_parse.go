package template

import (
	"slices"
	"strings"
)

// parseOneLineSources parses the one-line format of sources.list:
// "deb [option=value ...] URI SUITE [COMPONENT...]", with "#" starting a comment.
// Lines it cannot parse and "deb-src" lines are skipped.
func parseOneLineSources(data string) []aptSource {
	var sources []aptSource
	for _, line := range strings.Split(data, "\n") {
		line, _, _ = strings.Cut(line, "#")
		fields := strings.Fields(line)
		if len(fields) < 3 || fields[0] != "deb" {
			continue
		}
		fields = fields[1:]
		var src aptSource
		if strings.HasPrefix(fields[0], "[") {
			end := 0
			for end < len(fields) && !strings.HasSuffix(fields[end], "]") {
				end++
			}
			if end == len(fields) {
				continue
			}
			options := strings.Fields(strings.Trim(strings.Join(fields[:end+1], " "), "[]"))
			for _, option := range options {
				if value, ok := strings.CutPrefix(option, "signed-by="); ok {
					src.signedBy = value
				}
			}
			fields = fields[end+1:]
		}
		if len(fields) < 2 {
			continue
		}
		src.uris = fields[:1]
		src.suites = fields[1:2]
		src.components = fields[2:]
		sources = append(sources, src)
	}
	return sources
}

// parseDeb822Sources parses the deb822 format of *.sources files: stanzas of "Field: value"
// lines separated by blank lines, continuation lines starting with white space, "#" lines
// being comments. Stanzas without type "deb" or with "Enabled: no" are skipped.
func parseDeb822Sources(data string) []aptSource {
	var sources []aptSource
	for _, stanza := range deb822Stanzas(data) {
		if !strings.EqualFold(stanza["enabled"], "") && !strings.EqualFold(stanza["enabled"], "yes") {
			continue
		}
		types := strings.Fields(stanza["types"])
		if !slices.Contains(types, "deb") {
			continue
		}
		sources = append(sources, aptSource{
			uris:       strings.Fields(stanza["uris"]),
			suites:     strings.Fields(stanza["suites"]),
			components: strings.Fields(stanza["components"]),
			signedBy:   stanza["signed-by"],
		})
	}
	return sources
}

// deb822Stanzas splits data into stanzas, each a map from lower-cased field name to value.
func deb822Stanzas(data string) []map[string]string {
	var stanzas []map[string]string
	stanza := map[string]string{}
	last := ""
	for _, line := range strings.Split(data, "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			continue
		case strings.TrimSpace(line) == "":
			if len(stanza) > 0 {
				stanzas = append(stanzas, stanza)
				stanza, last = map[string]string{}, ""
			}
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				stanza[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = strings.ToLower(strings.TrimSpace(name))
			stanza[last] = strings.TrimSpace(value)
		}
	}
	if len(stanza) > 0 {
		stanzas = append(stanzas, stanza)
	}
	return stanzas
}
