package vmdef

import "strconv"

// clip quotes s for an error or warning line, cut short: hostile input must
// not turn one line of output into a megabyte.
func clip(s string) string {
	const max = 60
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

// orEmpty is a drive's medium for a message, or "empty".
func orEmpty(medium string) string {
	if medium == "" {
		return "empty"
	}
	return clip(medium)
}

// orUnstated is s, or "not stated" for a message when s is empty.
func orUnstated(s string) string {
	if s == "" {
		return "not stated"
	}
	return clip(s)
}

// firstNonEmpty is the first of values that is not "".
func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
