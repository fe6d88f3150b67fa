package debpkg

import "strings"

// parseStanza reads the first paragraph of a Debian control-format text (apt-cache show
// output, a Release file) into its fields. Continuation lines are joined to their field with
// newlines; field names keep their case. An OpenPGP clear-signed wrapper, as InRelease files
// have, is skipped.
func parseStanza(text string) map[string]string {
	fields := map[string]string{}
	text = stripClearsign(text)
	key := ""
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.TrimSpace(line) == "":
			if len(fields) > 0 {
				return fields
			}
		case line[0] == ' ' || line[0] == '\t':
			if key != "" && fields[key] != "" {
				fields[key] += "\n" + strings.TrimSpace(line)
			} else if key != "" {
				fields[key] = strings.TrimSpace(line) // a value that starts on the next line (MD5Sum:)
			}
		case line[0] == '#':
		default:
			name, value, ok := strings.Cut(line, ":")
			if !ok {
				key = ""
				continue
			}
			key = strings.TrimSpace(name)
			fields[key] = strings.TrimSpace(value)
		}
	}
	return fields
}

// stripClearsign returns the signed text inside an OpenPGP clear-signed message, or text
// itself when it is not one.
func stripClearsign(text string) string {
	if !strings.HasPrefix(text, "-----BEGIN PGP SIGNED MESSAGE-----") {
		return text
	}
	_, body, ok := strings.Cut(text, "\n\n") // after the armor headers ("Hash: SHA512")
	if !ok {
		return ""
	}
	body, _, _ = strings.Cut(body, "\n-----BEGIN PGP SIGNATURE-----")
	return body
}
