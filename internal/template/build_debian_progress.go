package template

import "strings"

// debootstrapProgress turns debootstrap's "I: ..." lines into progress phases. Packages are
// counted as they are retrieved. debootstrap then installs them in rounds ("Installing core
// packages...", "Unpacking the base system..."), each unpacking and configuring some of them;
// a round's total is the number of packages not yet unpacked.
type debootstrapProgress struct {
	packages   int64  // packages retrieved
	unpacked   int64  // packages unpacked in earlier rounds and this one
	phase      string // the phase of the last line
	done       int64  // steps of phase seen
	roundTotal int64  // packages the current round installs, at most
}

// parse reads one output line and returns the progress it shows, ok false when it shows none.
func (p *debootstrapProgress) parse(line string) (phase string, done, total int64, ok bool) {
	message, found := strings.CutPrefix(line, "I: ")
	if !found {
		return "", 0, 0, false
	}
	verb, object, _ := strings.Cut(message, " ")
	startsRound := strings.HasSuffix(object, "packages...") || strings.HasSuffix(object, "system...")
	switch {
	case verb == "Retrieving" && (strings.HasPrefix(object, "InRelease") || strings.HasPrefix(object, "Release") || strings.HasPrefix(object, "Packages")):
		return "retrieving package lists", 0, 0, true
	case verb == "Resolving":
		return "resolving dependencies", 0, 0, true
	case verb == "Retrieving":
		p.packages++
		p.advance("retrieving packages")
		return p.phase, p.done, 0, true
	case verb == "Extracting":
		p.advance("extracting packages")
		return p.phase, min(p.done, p.packages), p.packages, true
	case (verb == "Installing" || verb == "Unpacking") && startsRound:
		if p.phase != "installing packages" || p.done > 0 {
			p.roundTotal = max(p.packages-p.unpacked, 0)
		}
		p.phase, p.done = "installing packages", 0
	case verb == "Unpacking":
		p.advance("installing packages")
		p.unpacked++
	case verb == "Configuring" && startsRound:
		p.phase, p.done = "configuring packages", 0
	case verb == "Configuring":
		p.advance("configuring packages")
	default:
		return "", 0, 0, false
	}
	return p.phase, min(p.done, p.roundTotal), p.roundTotal, true
}

// advance counts one more step of phase, starting the count again when the phase changes.
func (p *debootstrapProgress) advance(phase string) {
	if p.phase != phase {
		p.phase, p.done = phase, 0
	}
	p.done++
}
