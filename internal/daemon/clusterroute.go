package daemon

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/polyvisor/polyvisor/internal/cluster"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// One view of a cluster: any member answers for every guest. A request
// for a guest another member runs is proxied to it whole (streams too:
// exec and console take the proxied connection over); a listing gathers
// every member's; a new guest is placed, then made where it was placed.

// forwardedHeader marks a request one member sent another on a user's
// behalf: the receiver serves it as its own and sends it nowhere else.
// It counts only from a member's certificate.
const forwardedHeader = "X-Polyvisor-Forwarded-By"

// clusterGate routes requests through the cluster: behind authenticate,
// in front of the routes.
func (d *Daemon) clusterGate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := d.clusterNow()
		if r.Header.Get(forwardedHeader) != "" {
			if _, ok := d.fromMember(r); !ok {
				r.Header.Del(forwardedHeader) // a user's claim counts for nothing
			}
		}
		if c == nil || r.Header.Get(forwardedHeader) != "" {
			if c != nil && isWrite(r) {
				if err := c.writable(r.Context()); err != nil {
					writeError(w, err)
					return
				}
			}
			next.ServeHTTP(w, r)
			return
		}
		if isWrite(r) {
			if err := c.writable(r.Context()); err != nil {
				writeError(w, err)
				return
			}
		}
		path := strings.TrimPrefix(r.URL.Path, api.Version)
		switch {
		case r.Method == http.MethodGet && path == "/guests":
			d.listCluster(w, r, c)
		case r.Method == http.MethodPost && path == "/guests":
			d.placeCreate(w, r, c, next)
		case strings.HasPrefix(path, "/guests/"):
			name, _, _ := strings.Cut(strings.TrimPrefix(path, "/guests/"), "/")
			d.routeGuest(w, r, c, name, next)
		case strings.HasPrefix(path, "/operations/"):
			id, _, _ := strings.Cut(strings.TrimPrefix(path, "/operations/"), "/")
			d.routeOperation(w, r, c, id, next)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// isWrite says whether a request changes the cluster's guests,
// templates, networks or membership. Exec and consoles are not: an admin
// cut off with a member still reaches its guests.
func isWrite(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return false
	}
	path := strings.TrimPrefix(r.URL.Path, api.Version)
	if strings.HasSuffix(path, "/exec") || strings.HasSuffix(path, "/console") {
		return false
	}
	for _, p := range []string{"/guests", "/templates", "/networks", "/imports", "/cluster/tokens", "/cluster/members/", "/cluster/replicas/"} {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// routeGuest serves a guest's request here when it is this member's,
// else proxies it to the member that runs it.
func (d *Daemon) routeGuest(w http.ResponseWriter, r *http.Request, c *clusterState, name string, next http.Handler) {
	if _, _, vendor := splitHostGuest(name); vendor {
		next.ServeHTTP(w, r)
		return
	}
	if _, err := d.guests.get(name); err == nil || !errors.Is(err, api.ErrNotFound) {
		next.ServeHTTP(w, r)
		return
	}
	p, found, err := c.reg.Guest(r.Context(), name)
	if err != nil || !found || p.Member == c.local.Member {
		next.ServeHTTP(w, r)
		return
	}
	m, ok := c.member(p.Member)
	if !ok {
		writeError(w, fmt.Errorf("%w: guest %s runs on member %s, which is no longer in the cluster", api.ErrNotAvailable, name, p.Member))
		return
	}
	if p.Lost != "" {
		writeError(w, fmt.Errorf("%w: guest %s: %s", api.ErrNotAvailable, name, p.Lost))
		return
	}
	d.forward(w, r, c, m)
}

// routeOperation finds the member an operation runs on: a request made
// through this member may have been placed on another.
func (d *Daemon) routeOperation(w http.ResponseWriter, r *http.Request, c *clusterState, id string, next http.Handler) {
	if _, err := d.ops.get(id); err == nil {
		next.ServeHTTP(w, r)
		return
	}
	for _, m := range c.memberList() {
		if m.Name == c.local.Member {
			continue
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		_, err := d.memberGet(ctx, c, m, api.Version+"/operations/"+id)
		cancel()
		if err == nil {
			d.forward(w, r, c, m)
			return
		}
	}
	next.ServeHTTP(w, r)
}

// forward proxies a request to member m, as its own (forwardedHeader).
func (d *Daemon) forward(w http.ResponseWriter, r *http.Request, c *clusterState, m cluster.Member) {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = "https", m.API, m.API
			pr.Out.Header.Set(forwardedHeader, c.local.Member)
		},
		Transport:     c.transport(d, m),
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, fmt.Errorf("%w: member %s does not answer (%v): 'polyvisor cluster list' shows its health", api.ErrNotAvailable, m.Name, err))
		},
	}
	proxy.ServeHTTP(w, r)
}

// transport is the HTTP transport to member m, kept per member while its
// certificate stays the same.
func (c *clusterState) transport(d *Daemon, m cluster.Member) *http.Transport {
	key := m.Name + "/" + m.Fingerprint + "/" + m.API
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.transports == nil {
		c.transports = map[string]*http.Transport{}
	}
	if t, ok := c.transports[key]; ok {
		return t
	}
	cfg := d.memberTLS(m)
	t := &http.Transport{
		TLSClientConfig:     cfg,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     time.Minute,
	}
	c.transports[key] = t
	return t
}

// memberGet is a GET of another member's API, as one member to another.
func (d *Daemon) memberGet(ctx context.Context, c *clusterState, m cluster.Member, path string) ([]byte, error) {
	return d.memberDo(ctx, c, m, http.MethodGet, path, nil, 0, nil)
}

// listCluster answers a listing of every member's guests, each row naming
// its member. A member that does not answer has its guests listed from
// the store, their state unknown.
func (d *Daemon) listCluster(w http.ResponseWriter, r *http.Request, c *clusterState) {
	local, err := d.handleList(r)
	if err != nil {
		writeError(w, err)
		return
	}
	parts := map[string][]byte{c.local.Member: local.(encodedJSON)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range c.memberList() {
		if m.Name == c.local.Member {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			body, err := d.memberGet(ctx, c, m, r.URL.RequestURI())
			if err != nil {
				d.log.Debug("a member's guests were not listed", "member", m.Name, "err", err)
				return
			}
			mu.Lock()
			parts[m.Name] = body
			mu.Unlock()
		})
	}
	wg.Wait()
	placements, placementsErr := c.reg.Guests(r.Context())
	owner := map[string]string{}
	for _, p := range placements {
		owner[p.Name] = p.Member
	}
	var out bytes.Buffer
	out.WriteByte('[')
	for _, member := range slices.Sorted(maps.Keys(parts)) {
		// A member's copy of a guest another member runs now (a failover
		// it has not caught up with yet) is not that guest.
		spliceMember(&out, parts[member], member, func(name string) bool {
			runsOn, claimed := owner[name]
			return !claimed || runsOn == member
		})
	}
	// The guests of members that did not answer, from the store.
	if placementsErr == nil {
		for _, p := range placements {
			if _, answered := parts[p.Member]; answered {
				continue
			}
			why := cmp.Or(p.Lost, "member "+p.Member+" does not answer")
			row := encodeListed(api.Guest{Name: p.Name, Member: p.Member, Type: p.Type, State: "unknown", Error: why, IPv4: []string{}}, r.URL.Query().Get("view") == api.ViewSummary)
			if out.Len() > 1 {
				out.WriteByte(',')
			}
			out.Write(row)
		}
	}
	out.WriteByte(']')
	writeJSON(w, http.StatusOK, encodedJSON(out.Bytes()))
}

// spliceMember appends the objects of a JSON array of guests to out (an
// array being written), each with "member" set, those whose name keep
// takes: a listing of 1,000 guests is joined without decoding it whole.
func spliceMember(out *bytes.Buffer, array []byte, member string, keep func(name string) bool) {
	array = bytes.TrimSpace(array)
	if len(array) < 2 {
		return
	}
	body := bytes.TrimSpace(array[1 : len(array)-1])
	field := []byte(`{"member":"` + member + `",`)
	for len(body) > 0 {
		end := objectEnd(body)
		obj := body[:end]
		body = bytes.TrimLeft(body[end:], ", \n\t\r")
		if !keep(guestName(obj)) {
			continue
		}
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		if bytes.Equal(bytes.TrimSpace(obj), []byte("{}")) {
			out.WriteString(`{"member":"` + member + `"}`)
		} else {
			out.Write(field)
			out.Write(bytes.TrimSpace(obj)[1:])
		}
	}
}

// guestName is the name of a guest's JSON object: read off its start as
// the daemon encodes it ("name" first, a DNS label), else decoded.
func guestName(obj []byte) string {
	if rest, ok := bytes.CutPrefix(obj, []byte(`{"name":"`)); ok {
		if end := bytes.IndexByte(rest, '"'); end >= 0 && bytes.IndexByte(rest[:end], '\\') < 0 {
			return string(rest[:end])
		}
	}
	var named struct {
		Name string `json:"name"`
	}
	json.Unmarshal(obj, &named)
	return named.Name
}

// objectEnd is the length of the JSON object body starts with (strings
// and nesting respected).
func objectEnd(body []byte) int {
	depth, inString, escaped := 0, false, false
	for i, b := range body {
		switch {
		case escaped:
			escaped = false
		case inString && b == '\\':
			escaped = true
		case b == '"':
			inString = !inString
		case inString:
		case b == '{' || b == '[':
			depth++
		case b == '}' || b == ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return len(body)
}

// placeCreate decides where a new guest runs, then makes it there: here,
// or proxied to the member chosen.
func (d *Daemon) placeCreate(w http.ResponseWriter, r *http.Request, c *clusterState, next http.Handler) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, bodyError(err))
		return
	}
	var req api.GuestCreate
	if err := readJSON(&http.Request{Body: io.NopCloser(bytes.NewReader(body))}, &req); err != nil {
		writeError(w, err)
		return
	}
	m, err := d.place(r.Context(), c, req)
	if err != nil {
		writeError(w, err)
		return
	}
	r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	if m.Name == c.local.Member {
		next.ServeHTTP(w, r)
		return
	}
	d.log.Info("placed a guest on another member", "guest", req.Name, "member", m.Name, "target", req.Target, "spread", req.Spread)
	d.forward(w, r, c, m)
}

// place picks the member a new guest runs on: the one asked (--target),
// else among the online members whose verdict for its type is ok, one
// that holds no guest of its spread group if any does, then the one with
// the most free memory, then the least loaded.
func (d *Daemon) place(ctx context.Context, c *clusterState, req api.GuestCreate) (cluster.Member, error) {
	alive, err := c.reg.Alive(ctx)
	if err != nil {
		return cluster.Member{}, err
	}
	if req.Target != "" {
		m, ok := c.member(req.Target)
		if !ok {
			return m, fmt.Errorf("%w: target %q: no such cluster member ('polyvisor cluster list' shows them)", api.ErrInvalid, req.Target)
		}
		if _, online := alive[m.Name]; !online {
			return m, fmt.Errorf("%w: target %s is offline: pick another member, or leave --target out", api.ErrNotAvailable, m.Name)
		}
		return m, nil
	}
	kind := req.Type
	if kind == "" {
		if t, err := d.templates.Load(req.Template); err == nil {
			kind = t.Type
		}
	}
	inGroup := map[string]int{}
	if req.Spread != "" {
		placements, err := c.reg.Guests(ctx)
		if err != nil {
			return cluster.Member{}, err
		}
		for _, p := range placements {
			if p.Spread == req.Spread {
				inGroup[p.Member]++
			}
		}
	}
	var candidates []cluster.Member
	var why []string
	for _, m := range c.memberList() {
		s, online := alive[m.Name]
		switch {
		case !online:
			why = append(why, m.Name+": offline")
		case kind != "" && s.Classes[kind] != "" && s.Classes[kind] != "ok":
			why = append(why, m.Name+": "+s.Classes[kind])
		default:
			candidates = append(candidates, m)
		}
	}
	if len(candidates) == 0 {
		return cluster.Member{}, fmt.Errorf("%w: no member can run a %s guest now (%s)", api.ErrNotAvailable, cmp.Or(kind, "new"), strings.Join(why, "; "))
	}
	best := slices.MinFunc(candidates, func(a, b cluster.Member) int {
		sa, sb := alive[a.Name], alive[b.Name]
		switch {
		case inGroup[a.Name] != inGroup[b.Name]:
			return inGroup[a.Name] - inGroup[b.Name]
		case sa.FreeMemory != sb.FreeMemory:
			if sa.FreeMemory > sb.FreeMemory {
				return -1
			}
			return 1
		case sa.Load != sb.Load:
			if sa.Load < sb.Load {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return best, nil
}

// fetchTemplateFor fetches a new guest's template from a member that has
// it, as the members' published catalogues say, when this one does not:
// templates built on one member serve all. It says whether it fetched
// one.
func (d *Daemon) fetchTemplateFor(ctx context.Context, req api.GuestCreate) bool {
	c := d.clusterNow()
	if c == nil {
		return false
	}
	catalogues, err := c.reg.State(ctx, "templates")
	if err != nil {
		return false
	}
	kind := cmp.Or(req.Type, guest.DefaultType)
	for _, member := range slices.Sorted(maps.Keys(catalogues)) {
		m, ok := c.member(member)
		if !ok || member == c.local.Member {
			continue
		}
		for _, id := range slices.Sorted(maps.Keys(catalogues[member])) {
			var t api.Template
			if json.Unmarshal(catalogues[member][id], &t) != nil || t.Name != req.Template || t.Type != kind || (req.Arch != "" && !strings.EqualFold(t.Arch, req.Arch)) {
				continue
			}
			if err := d.fetchTemplate(ctx, d.memberClient(m), t.ID); err != nil {
				d.log.Warn("fetch a template from a member", "template", t.ID, "member", m.Name, "err", err)
				continue
			}
			return true
		}
	}
	return false
}
