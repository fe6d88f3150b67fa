package daemon

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/polyvisor/polyvisor/internal/cluster"
	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// Liveness, failover and replication. Each member renews a lease under
// which its status lives; the member elected leader (etcd's election)
// watches the leases and, for a member silent past OfflineAfter, runs
// each HA guest of its again on the guest's replica member from its last
// replica, or marks it lost with the reason. A member that cannot renew
// its own lease stops its replicated HA guests (it fences itself), since
// the majority will run them elsewhere; when it comes back it removes its
// stale copies.

// claim takes def's name cluster-wide (reserve calls it): refused when
// another member has a guest of that name.
func (d *Daemon) claim(ctx context.Context, def *guest.Definition) error {
	c := d.clusterNow()
	if c == nil {
		return nil
	}
	return c.reg.ClaimGuest(ctx, cluster.Placement{Name: def.Name, Member: c.local.Member, Type: def.Type})
}

// unclaim frees a name this member held (a failed create, a delete).
func (d *Daemon) unclaim(name string) {
	c := d.clusterNow()
	if c == nil {
		return
	}
	if err := c.reg.ReleaseGuest(context.Background(), name, c.local.Member); err != nil {
		d.log.Warn("the cluster keeps a deleted guest's record", "guest", name, "err", err)
	}
}

// setPlacement records what a create asked of its guest's placement.
func (d *Daemon) setPlacement(ctx context.Context, name string, req api.GuestCreate) error {
	c := d.clusterNow()
	if c == nil || (!req.HA && req.Spread == "") {
		return nil
	}
	p, found, err := c.reg.Guest(ctx, name)
	if err != nil || !found {
		return err
	}
	p.HA, p.Spread = req.HA, req.Spread
	return c.reg.UpdateGuest(ctx, p, c.local.Member)
}

// heartbeat keeps this member's status under its lease, and fences the
// member when it cannot.
func (d *Daemon) heartbeat(ctx context.Context, c *clusterState) {
	offline := time.Duration(c.local.Settings.OfflineAfter)
	ttl := int64(math.Ceil(offline.Seconds()))
	var lease clientv3.LeaseID
	lastOK, fenced, reconcile := time.Now(), false, false
	classes, classesAt := map[string]string{}, time.Time{}
	for {
		// The class canaries run real guests: hourly, not per beat.
		if time.Since(classesAt) > time.Hour {
			classes, classesAt = d.classVerdicts(ctx), time.Now()
		}
		err := func() error {
			if lease == 0 {
				gctx, cancel := context.WithTimeout(ctx, offline/2)
				resp, err := c.reg.Client().Grant(gctx, ttl)
				cancel()
				if err != nil {
					return err
				}
				lease = resp.ID
			}
			kctx, cancel := context.WithTimeout(ctx, offline/2)
			defer cancel()
			if _, err := c.reg.Client().KeepAliveOnce(kctx, lease); err != nil {
				lease = 0 // expired meanwhile: the others took this member for lost
				return err
			}
			return c.reg.PutStatus(ctx, c.local.Member, memberStatus(classes), lease)
		}()
		switch {
		case err == nil:
			if fenced {
				d.log.Info("this member reaches the cluster again")
				reconcile = true
			}
			// Until it goes through: the store may not answer reads yet.
			if reconcile && d.reconcileClaims(ctx, c) == nil {
				reconcile = false
			}
			lastOK, fenced = time.Now(), false
		case ctx.Err() != nil:
		case !fenced && time.Since(lastOK) > offline:
			d.log.Warn("this member cannot reach the cluster: its HA guests will run elsewhere, so it stops its own", "err", err)
			d.fence(ctx, c)
			fenced = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(offline / 4):
		}
	}
}

// memberStatus is what this member says of itself.
func memberStatus(classes map[string]string) cluster.Status {
	s := cluster.Status{CPUs: runtime.NumCPU(), Classes: classes, At: time.Now().UTC()}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				s.FreeMemory = kb * 1024
			}
		}
		f.Close()
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if fields := strings.Fields(string(data)); len(fields) > 0 {
			s.Load, _ = strconv.ParseFloat(fields[0], 64)
		}
	}
	return s
}

// classVerdicts are host check's verdicts by guest type: ok when any of
// the type's drivers works here, else the first reason.
func (d *Daemon) classVerdicts(ctx context.Context) map[string]string {
	out := map[string]string{}
	for _, drv := range d.cfg.Drivers.All() {
		v := drv.Check(ctx)
		switch {
		case v.Works:
			out[drv.Type()] = "ok"
		case out[drv.Type()] == "":
			out[drv.Type()] = drv.Name() + ": " + v.Reason
		}
	}
	return out
}

// fence stops this member's HA guests that have a replica elsewhere: the
// majority runs them from it once this member's lease is gone.
func (d *Daemon) fence(ctx context.Context, c *clusterState) {
	for _, e := range d.guests.entries() {
		def := e.def.Load()
		if !running(def) || !c.replicated(def.Name) {
			continue
		}
		if err := e.acquire(); err != nil {
			continue
		}
		err := d.stopLocked(ctx, e, 10*time.Second)
		e.release()
		d.log.Warn("fenced an HA guest: stopped here, as it runs on another member now", "guest", def.Name, "err", err)
	}
}

// replicated says whether a guest of this member's has a replica
// elsewhere, as this member last heard.
func (c *clusterState) replicated(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.withReplica[name]
}

// lead campaigns to be the member that acts on failures, and acts while
// it is.
func (d *Daemon) lead(ctx context.Context, c *clusterState) {
	ttl := int(math.Ceil(time.Duration(c.local.Settings.OfflineAfter).Seconds()))
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(c.reg.Client(), concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		if err != nil {
			sleepCtx(ctx, time.Second)
			continue
		}
		election := concurrency.NewElection(sess, cluster.ElectionPrefix)
		if err := election.Campaign(ctx, c.local.Member); err != nil {
			sess.Close()
			sleepCtx(ctx, time.Second)
			continue
		}
		d.log.Info("this member acts on the cluster's failures now", "member", c.local.Member)
		tick := time.NewTicker(time.Second)
	watch:
		for {
			select {
			case <-ctx.Done():
				break watch
			case <-sess.Done():
				break watch
			case <-tick.C:
				d.checkMembers(ctx, c)
			}
		}
		tick.Stop()
		sess.Close()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// checkMembers acts on the guests of members that are offline: an HA
// guest with a replica runs again on its replica's member; any other is
// marked lost, with the reason, until its member comes back.
func (d *Daemon) checkMembers(ctx context.Context, c *clusterState) {
	alive, err := c.reg.Alive(ctx)
	if err != nil {
		return
	}
	if err := c.reg.Writable(ctx); err != nil {
		return // a leader cut off acts on nothing
	}
	d.promoteLearners(ctx, c)
	placements, err := c.reg.Guests(ctx)
	if err != nil {
		return
	}
	for _, p := range placements {
		_, online := alive[p.Member]
		if online {
			if p.Lost != "" {
				p.Lost = ""
				c.reg.UpdateGuest(ctx, p, p.Member)
			}
			continue
		}
		if p.Lost != "" {
			continue
		}
		_, replicaOnline := alive[p.Replica]
		switch {
		case p.HA && p.Replica != "" && replicaOnline && !p.ReplicatedAt.IsZero():
			d.failover(ctx, c, p)
		case !p.HA:
			d.markLost(ctx, c, p, fmt.Sprintf("member %s is offline; the guest is not HA (launch --ha), so it waits for its member", p.Member))
		case p.Replica == "" || p.ReplicatedAt.IsZero():
			d.markLost(ctx, c, p, fmt.Sprintf("member %s is offline and the guest had no replica yet: it is lost until its member comes back", p.Member))
		default:
			d.markLost(ctx, c, p, fmt.Sprintf("member %s is offline, and so is %s, which keeps its replica", p.Member, p.Replica))
		}
	}
}

// votersFor is how many of n members vote: three, or five once there
// are five (an odd count, so that a split leaves one side a majority).
func votersFor(n int) int {
	if n >= 5 {
		return 5
	}
	return min(n, 3)
}

// promoteLearners makes learners voters while fewer than votersFor vote;
// etcd refuses a learner that has not caught up yet, and the next
// round tries again.
func (d *Daemon) promoteLearners(ctx context.Context, c *clusterState) {
	resp, err := c.reg.Client().MemberList(ctx)
	if err != nil {
		return
	}
	voters := 0
	for _, m := range resp.Members {
		if !m.IsLearner {
			voters++
		}
	}
	want := votersFor(len(resp.Members))
	for _, m := range resp.Members {
		if !m.IsLearner || voters >= want {
			continue
		}
		if _, err := c.reg.Client().MemberPromote(ctx, m.ID); err != nil {
			continue
		}
		voters++
		d.log.Info("a learner votes now", "member", m.Name)
		for _, rec := range c.memberList() {
			if rec.EtcdID == m.ID {
				rec.Learner = false
				c.reg.PutMember(ctx, rec)
			}
		}
	}
}

func (d *Daemon) markLost(ctx context.Context, c *clusterState, p cluster.Placement, why string) {
	p.Lost = why
	if err := c.reg.UpdateGuest(ctx, p, p.Member); err == nil {
		d.log.Warn("a guest is lost", "guest", p.Name, "why", why)
	}
}

// failover runs an HA guest of a lost member on its replica's member.
func (d *Daemon) failover(ctx context.Context, c *clusterState, p cluster.Placement) {
	from := p.Member
	next := p
	next.Member, next.Replica, next.ReplicatedAt, next.Lost = p.Replica, "", time.Time{}, ""
	if err := c.reg.UpdateGuest(ctx, next, from); err != nil {
		return
	}
	reason := fmt.Sprintf("member %s went offline", from)
	d.log.Warn("failing over an HA guest", "guest", p.Name, "from", from, "to", next.Member, "replicated", p.ReplicatedAt)
	err := d.promoteOn(ctx, c, next.Member, p.Name, api.ReplicaPromote{Start: p.Running, Reason: reason})
	if err != nil {
		next.Lost = fmt.Sprintf("failover from %s to %s failed: %v", from, next.Member, err)
		c.reg.UpdateGuest(ctx, next, next.Member)
		d.log.Error("failover failed", "guest", p.Name, "err", err)
	}
}

// promoteOn has member name run its replica of guest: here, or by asking
// it, and waits for it.
func (d *Daemon) promoteOn(ctx context.Context, c *clusterState, name, guestName string, req api.ReplicaPromote) error {
	if name == c.local.Member {
		op := d.ops.startReporting(d.ctx, "promote", guestName, func(ctx context.Context, rep *opReport) error {
			return d.promoteReplica(ctx, guestName, req, rep)
		})
		done, err := d.ops.wait(ctx, op.ID, 10*time.Minute)
		if err == nil && done.Status == api.OpFailure {
			err = errors.New(done.Error)
		}
		return err
	}
	m, ok := c.member(name)
	if !ok {
		return fmt.Errorf("member %s is not in the cluster", name)
	}
	peer := d.memberClient(m)
	op, err := peer.PromoteReplica(ctx, guestName, req)
	if err != nil {
		return err
	}
	return peer.Wait(ctx, op, nil)
}

// rejoin brings this member's claims in line with the store once it
// reaches it: its record, its guests' claims, and its stale copies gone.
func (d *Daemon) rejoin(ctx context.Context, c *clusterState) {
	for ctx.Err() == nil {
		if err := d.putSelf(ctx, c, 0, false); err == nil && d.reconcileClaims(ctx, c) == nil {
			return
		}
		sleepCtx(ctx, 2*time.Second)
	}
}

// reconcileClaims claims this member's guests the store does not know,
// and removes the ones another member runs now (it ran them after a
// failover while this member was cut off or down): no guest runs twice.
func (d *Daemon) reconcileClaims(ctx context.Context, c *clusterState) error {
	placements, err := c.reg.Guests(ctx)
	if err != nil {
		return err
	}
	byName := map[string]cluster.Placement{}
	for _, p := range placements {
		byName[p.Name] = p
	}
	for _, e := range d.guests.entries() {
		def := e.def.Load()
		p, found := byName[def.Name]
		switch {
		case !found:
			if err := d.claim(ctx, def); err != nil {
				d.log.Error("claim a guest in the cluster", "guest", def.Name, "err", err)
			}
		case p.Member != c.local.Member:
			if err := e.acquire(); err != nil {
				continue
			}
			err := d.deleteLocked(ctx, e, true)
			e.release()
			d.log.Warn("removed a stale copy: the guest runs on another member since a failover or move", "guest", def.Name, "member", p.Member, "err", err)
		}
	}
	return nil
}

// replicate copies this member's HA guests to their replica members
// every ReplicateEvery.
func (d *Daemon) replicate(ctx context.Context, c *clusterState) {
	tick := time.NewTicker(time.Duration(c.local.Settings.ReplicateEvery))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			d.replicateOnce(ctx, c)
		}
	}
}

// replicateOnce copies each HA guest of this member's once.
func (d *Daemon) replicateOnce(ctx context.Context, c *clusterState) {
	placements, err := c.reg.Guests(ctx)
	if err != nil {
		return
	}
	alive, _ := c.reg.Alive(ctx)
	withReplica := map[string]bool{}
	for _, p := range placements {
		if p.Member != c.local.Member {
			continue
		}
		if _, err := d.guests.get(p.Name); err != nil {
			continue
		}
		if !p.HA {
			continue
		}
		if _, online := alive[p.Replica]; !online || p.Replica == c.local.Member {
			p.Replica = d.pickReplica(c, alive)
		}
		if p.Replica == "" {
			d.log.Warn("an HA guest has no replica: no other member is online", "guest", p.Name)
			continue
		}
		m, _ := c.member(p.Replica)
		running, err := d.sendReplica(ctx, c, p.Name, m)
		if err != nil {
			d.log.Warn("replicate an HA guest", "guest", p.Name, "to", p.Replica, "err", err)
			continue
		}
		p.ReplicatedAt, p.Running = time.Now().UTC(), running
		if err := c.reg.UpdateGuest(ctx, p, c.local.Member); err == nil {
			withReplica[p.Name] = true
		}
	}
	c.mu.Lock()
	c.withReplica = withReplica
	c.mu.Unlock()
}

// pickReplica is the online member, other than this one, with the most
// free memory.
func (d *Daemon) pickReplica(c *clusterState, alive map[string]cluster.Status) string {
	best := ""
	for name, s := range alive {
		if name == c.local.Member {
			continue
		}
		if best == "" || s.FreeMemory > alive[best].FreeMemory || (s.FreeMemory == alive[best].FreeMemory && name < best) {
			best = name
		}
	}
	return best
}

// replicaMeta is what a replica keeps of its guest besides its disk.
type replicaMeta struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Format   string   `json:"format"`
	CPUs     int      `json:"cpus"`
	Memory   string   `json:"memory"`
	Networks []string `json:"networks"`
	// Running says whether it ran when it was copied; At is when the
	// copy began.
	Running bool      `json:"running"`
	At      time.Time `json:"at"`
}

// replicaHeader carries a replica's meta, base64 JSON, beside its disk.
const replicaHeader = "X-Polyvisor-Replica"

// sendReplica exports a guest and hands the copy to member m. A running
// container is copied as it runs (each file whole, the tree not at one
// instant: what a crash would leave); a running VM's disk is not read
// under QEMU, so its copy waits for it to stop.
func (d *Daemon) sendReplica(ctx context.Context, c *clusterState, name string, m cluster.Member) (wasRunning bool, err error) {
	e, err := d.guests.get(name)
	if err != nil {
		return false, err
	}
	if err := e.acquire(); err != nil {
		return false, err
	}
	def := e.def.Load()
	wasRunning = running(def)
	format := "tar"
	if def.Type == "vm" {
		format = "qcow2"
		if wasRunning {
			e.release()
			return true, fmt.Errorf("%w: a running VM's disk is copied when it stops; its last copy stands", api.ErrNotAvailable)
		}
	}
	// Under the uploads dir, which the next daemon sweeps after a crash.
	if err := os.MkdirAll(d.layout.UploadsDir(), 0o700); err != nil {
		e.release()
		return false, err
	}
	work, err := os.MkdirTemp(d.layout.UploadsDir(), "replica-")
	if err != nil {
		e.release()
		return false, err
	}
	defer os.RemoveAll(work)
	file := filepath.Join(work, "disk."+format)
	// The copy holds what was written before it began.
	began := time.Now().UTC()
	exp, progress := api.Export{Path: file, Format: format}, func(string, int64, int64) {}
	if live, ok := d.liveExporter(def); ok && wasRunning {
		err = live.ExportRunning(ctx, def, exp, progress)
	} else {
		err = d.export(ctx, def, exp, progress, func(string) {})
	}
	e.release()
	if err != nil {
		return wasRunning, fmt.Errorf("copy %s: %w", name, err)
	}
	meta := replicaMeta{Name: name, Type: def.Type, Format: format, CPUs: def.CPUs, Memory: def.Memory.String(), Networks: def.Networks, Running: wasRunning, At: began}
	f, err := os.Open(file)
	if err != nil {
		return wasRunning, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return wasRunning, err
	}
	metaJSON, _ := json.Marshal(meta)
	header := http.Header{replicaHeader: {base64.StdEncoding.EncodeToString(metaJSON)}}
	if _, err := d.memberDo(ctx, c, m, http.MethodPut, api.Version+"/cluster/replicas/"+name, f, st.Size(), header); err != nil {
		return wasRunning, fmt.Errorf("replica of %s: %w", name, err)
	}
	return wasRunning, nil
}

// liveExporter is def's driver's live export, if it has one.
func (d *Daemon) liveExporter(def *guest.Definition) (driver.LiveExporter, bool) {
	drv, err := d.driverFor(def)
	if err != nil {
		return nil, false
	}
	live, ok := drv.(driver.LiveExporter)
	return live, ok
}

// handleReplicaReceive keeps a member's copy of one of its HA guests,
// replacing the copy before only once the new one is whole.
func (d *Daemon) handleReplicaReceive(w http.ResponseWriter, r *http.Request) {
	from, ok := d.fromMember(r)
	if !ok {
		writeError(w, fmt.Errorf("%w: only a cluster member sends replicas", api.ErrForbidden))
		return
	}
	name := r.PathValue("name")
	if err := guest.ValidateName(name); err != nil {
		writeError(w, fmt.Errorf("%w: replica name %q", api.ErrInvalid, name))
		return
	}
	var meta replicaMeta
	raw, err := base64.StdEncoding.DecodeString(r.Header.Get(replicaHeader))
	if err == nil {
		err = json.Unmarshal(raw, &meta)
	}
	if err != nil || meta.Name != name || (meta.Format != "tar" && meta.Format != "qcow2") {
		writeError(w, fmt.Errorf("%w: replica %s: its description is missing or wrong", api.ErrInvalid, name))
		return
	}
	if err := d.checkUploadSize(r.ContentLength); err != nil {
		writeError(w, err)
		return
	}
	if err := os.MkdirAll(d.layout.ReplicasDir(), 0o700); err != nil {
		writeError(w, err)
		return
	}
	staging, err := os.MkdirTemp(d.layout.ReplicasDir(), ".incoming-"+name+"-")
	if err != nil {
		writeError(w, err)
		return
	}
	defer os.RemoveAll(staging)
	err = func() error {
		f, err := os.OpenFile(filepath.Join(staging, "disk."+meta.Format), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.Copy(f, http.MaxBytesReader(w, r.Body, r.ContentLength))
		if err == nil && n != r.ContentLength {
			err = fmt.Errorf("the replica stopped after %d of %d bytes", n, r.ContentLength)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(staging, "meta.json"), raw, 0o600)
	}()
	if err == nil {
		final := filepath.Join(d.layout.ReplicasDir(), name)
		old := final + ".old"
		os.RemoveAll(old)
		os.Rename(final, old)
		if err = os.Rename(staging, final); err != nil {
			os.Rename(old, final)
		}
		os.RemoveAll(old)
	}
	if err != nil {
		writeError(w, fmt.Errorf("replica %s: %w", name, err))
		return
	}
	d.log.Debug("kept a replica", "guest", name, "from", from, "bytes", r.ContentLength)
	w.WriteHeader(http.StatusNoContent)
}

// handleReplicaPromote runs a replica kept here as its guest.
func (d *Daemon) handleReplicaPromote(r *http.Request) (any, error) {
	if _, ok := d.fromMember(r); !ok {
		return nil, fmt.Errorf("%w: only a cluster member promotes replicas", api.ErrForbidden)
	}
	var req api.ReplicaPromote
	if err := readJSON(r, &req); err != nil {
		return nil, err
	}
	name := r.PathValue("name")
	if _, err := os.Stat(filepath.Join(d.layout.ReplicasDir(), name, "meta.json")); err != nil {
		return nil, fmt.Errorf("%w: no replica of %s is kept here", api.ErrNotFound, name)
	}
	return d.ops.startReporting(d.ctx, "promote", name, func(ctx context.Context, rep *opReport) error {
		return d.promoteReplica(ctx, name, req, rep)
	}), nil
}

// promoteReplica imports a replica as its guest, starts it if asked, and
// drops the replica.
func (d *Daemon) promoteReplica(ctx context.Context, name string, req api.ReplicaPromote, rep *opReport) error {
	dir := filepath.Join(d.layout.ReplicasDir(), name)
	raw, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return fmt.Errorf("%w: no replica of %s is kept here", api.ErrNotFound, name)
	}
	var meta replicaMeta
	if err := json.Unmarshal(raw, &meta); err != nil {
		return fmt.Errorf("replica %s: %w", name, err)
	}
	imp := api.Import{Path: filepath.Join(dir, "disk."+meta.Format), Name: name, As: api.ImportAsGuest, Start: req.Start,
		CPUs: meta.CPUs, Memory: meta.Memory, Networks: meta.Networks}
	if err := d.checkImport(&imp); err != nil {
		return err
	}
	if err := d.importGuest(ctx, imp, rep); err != nil {
		return fmt.Errorf("run the replica of %s: %w", name, err)
	}
	d.log.Warn("runs a guest from its replica", "guest", name, "copied", meta.At, "reason", req.Reason)
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Error("remove a promoted replica", "guest", name, "err", err)
	}
	return nil
}
