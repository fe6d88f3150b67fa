package qemu

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/polyvisor/polyvisor/internal/driver"
	"github.com/polyvisor/polyvisor/internal/guest"
	"github.com/polyvisor/polyvisor/internal/monitor/monitored"
	"github.com/polyvisor/polyvisor/internal/qmp"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// A live migration carries the guest's disks as well as its memory, as
// QEMU's non-shared storage recipe does: the destination starts the same
// QEMU command line paused (-S -incoming defer), with empty standalone
// qcow2 disks of the source's sizes that its NBD server exports
// writable; the source mirrors every disk into them (drive-mirror,
// sync=full: the destination may lack the template's base, or hold a
// different build of it), waits until every mirror is in step, migrates
// the RAM and device state over TCP and, once QEMU reports the migration
// complete (the source's CPUs stopped, nothing more written), ends the
// mirrors, which leaves each copy whole. Only then is the destination
// resumed: it runs from disks no one writes to any more.

const (
	// migratePoll paces the polling of block jobs and migration state:
	// the QMP client skips QEMU's events.
	migratePoll = 50 * time.Millisecond
	// migrateBandwidth lifts QEMU 7.2's default cap of 32 MiB/s on the
	// migration stream, unless Options.MigrationBandwidth says otherwise.
	migrateBandwidth = 1 << 30
	// migrateCancelWait bounds the wait for a cancelled migration or
	// mirror to wind down, after the caller's ctx ended.
	migrateCancelWait = 30 * time.Second
	// mirrorJob prefixes the id of each disk's mirror job and export.
	mirrorJob = "migrate-"
)

// migratable refuses a guest whose state a migration would not carry
// whole: a UEFI guest's variable store is a file beside its disks.
func migratable(def *guest.Definition) error {
	if _, ok := def.Disk("uefi-vars"); ok {
		return fmt.Errorf("%w: migrate %s: a UEFI guest's variable store cannot move live yet; stop the guest and move it stopped", api.ErrNotAvailable, def.Name)
	}
	return nil
}

var _ driver.Migrator = (*Driver)(nil)

// MigrationDisks implements driver.Migrator: each qcow2 disk by name with
// its virtual size, as the running QEMU sees it.
func (d *Driver) MigrationDisks(ctx context.Context, def *guest.Definition) ([]driver.MigrationDisk, error) {
	if !monitored.Process(def).Alive() {
		return nil, fmt.Errorf("guest %s: %w: only a running VM migrates live", def.Name, api.ErrNotRunning)
	}
	if err := migratable(def); err != nil {
		return nil, err
	}
	m, err := qmp.Dial(ctx, d.qmpSocket(def))
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", def.Name, err)
	}
	defer m.Close()
	blocks, err := drives(ctx, m)
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", def.Name, err)
	}
	var disks []driver.MigrationDisk
	for _, disk := range qcow2Disks(def) {
		info, ok := blocks[driveID(disk.Name)]
		if !ok {
			return nil, fmt.Errorf("migrate %s: QEMU has no drive %s", def.Name, driveID(disk.Name))
		}
		disks = append(disks, driver.MigrationDisk{ID: disk.Name, Size: info.Image.VirtualSize})
	}
	return disks, nil
}

// drives returns the machine's drives with a medium, by drive id.
func drives(ctx context.Context, m *qmp.Client) (map[string]*qmp.BlockDeviceInfo, error) {
	var blocks []qmp.BlockInfo
	if err := m.Run(ctx, qmp.QueryBlock{}, &blocks); err != nil {
		return nil, err
	}
	byID := map[string]*qmp.BlockDeviceInfo{}
	for _, b := range blocks {
		if b.Inserted != nil {
			byID[b.Device] = b.Inserted
		}
	}
	return byID, nil
}

// PrepareIncoming implements driver.Migrator. The guest's directory here
// gets empty qcow2 disks of the source's sizes (an existing one is
// refused: PrepareIncoming never overwrites), its QEMU starts under its
// monitor as Start starts it, but paused and waiting on listen for the
// migration, and its NBD server on listen exports each disk, writable,
// under the disk's name. When it fails it leaves nothing.
func (d *Driver) PrepareIncoming(ctx context.Context, def *guest.Definition, src driver.MigrationSource, listen netip.Addr) (in driver.Incoming, status guest.Status, err error) {
	if err := migratable(def); err != nil {
		return in, status, err
	}
	if !listen.IsValid() {
		return in, status, fmt.Errorf("%w: migrate %s here: no address to listen on", api.ErrInvalid, def.Name)
	}
	disks := qcow2Disks(def)
	sizes := map[string]int64{}
	for _, disk := range src.Disks {
		sizes[disk.ID] = disk.Size
	}
	if len(sizes) != len(disks) {
		return in, status, fmt.Errorf("%w: migrate %s here: the source has %d disks, its definition %d", api.ErrInvalid, def.Name, len(sizes), len(disks))
	}
	for _, disk := range disks {
		if sizes[disk.Name] <= 0 {
			return in, status, fmt.Errorf("%w: migrate %s here: the source gave no size of disk %s", api.ErrInvalid, def.Name, disk.Name)
		}
	}
	if err := os.MkdirAll(filepath.Join(d.guestDir(def), "disks"), 0o700); err != nil {
		return in, status, fmt.Errorf("migrate %s here: %w", def.Name, err)
	}
	var made []string
	defer func() {
		if err != nil {
			d.removeIncoming(def, made)
		}
	}()
	for _, disk := range disks {
		path := d.diskPath(def, disk)
		if _, serr := os.Lstat(path); serr == nil {
			return in, status, fmt.Errorf("%w: migrate %s here: its disk %s exists already", api.ErrExists, def.Name, path)
		}
		made = append(made, path)
		if err := qemuImg(ctx, "create", "-q", "-f", "qcow2", path, strconv.FormatInt(sizes[disk.Name], 10)); err != nil {
			return in, status, fmt.Errorf("migrate %s here: make disk %s: %w", def.Name, disk.Name, err)
		}
	}
	status, _, err = d.launch(ctx, def, true)
	if err != nil {
		return in, status, err
	}
	started := def.Clone()
	started.Status = status
	defer func() {
		if err != nil {
			d.kill(context.WithoutCancel(ctx), started)
			d.Cleanup(context.WithoutCancel(ctx), started)
		}
	}()
	m, err := qmp.Dial(ctx, d.qmpSocket(def))
	if err != nil {
		return in, status, fmt.Errorf("migrate %s here: %w", def.Name, err)
	}
	defer m.Close()
	if in.Migration, err = listenIncoming(ctx, m, listen); err != nil {
		return in, status, fmt.Errorf("migrate %s here: %w", def.Name, err)
	}
	if in.NBD, in.Exports, err = serveDisks(ctx, m, listen, disks); err != nil {
		return in, status, fmt.Errorf("migrate %s here: %w", def.Name, err)
	}
	return in, status, nil
}

// listenIncoming has QEMU listen for the migration on any port of listen
// and returns the address it got, as "tcp:IP:PORT".
func listenIncoming(ctx context.Context, m *qmp.Client, listen netip.Addr) (string, error) {
	if err := m.Run(ctx, qmp.MigrateIncoming{URI: "tcp:" + netip.AddrPortFrom(listen, 0).String()}, nil); err != nil {
		return "", err
	}
	var info qmp.MigrationInfo
	if err := m.Run(ctx, qmp.QueryMigrate{}, &info); err != nil {
		return "", err
	}
	for _, a := range info.SocketAddress {
		if port, err := strconv.ParseUint(a.Port, 10, 16); err == nil && a.Type == "inet" && port > 0 {
			return "tcp:" + netip.AddrPortFrom(listen, uint16(port)).String(), nil
		}
	}
	return "", fmt.Errorf("QEMU did not say where it listens for the migration (%+v)", info.SocketAddress)
}

// serveDisks starts QEMU's NBD server on a free port of listen and
// exports each disk on it, writable, under its name.
func serveDisks(ctx context.Context, m *qmp.Client, listen netip.Addr, disks []guest.Disk) (string, map[string]string, error) {
	var addr netip.AddrPort
	var err error
	// QEMU cannot say which port it got for port 0: one is picked here,
	// and picked again should another program take it meanwhile.
	for range 3 {
		if addr, err = freePort(listen); err != nil {
			return "", nil, err
		}
		if err = m.Run(ctx, qmp.NBDServerStart{Addr: qmp.InetAddress{Host: listen.String(), Port: strconv.Itoa(int(addr.Port()))}}, nil); err == nil {
			break
		}
	}
	if err != nil {
		return "", nil, fmt.Errorf("serve the disks over NBD: %w", err)
	}
	exports := map[string]string{}
	for _, disk := range disks {
		if err := m.Run(ctx, qmp.NBDServerAdd{Device: driveID(disk.Name), Name: disk.Name, Writable: true}, nil); err != nil {
			return "", nil, fmt.Errorf("export disk %s: %w", disk.Name, err)
		}
		exports[disk.Name] = disk.Name
	}
	return addr.String(), exports, nil
}

// freePort returns an address on ip whose TCP port nobody listens on now.
func freePort(ip netip.Addr) (netip.AddrPort, error) {
	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).AddrPort(), nil
}

// removeIncoming removes what PrepareIncoming made: the disks in made,
// the console log, and the guest's directories once empty.
func (d *Driver) removeIncoming(def *guest.Definition, made []string) {
	log := d.ConsoleLog(def)
	for _, path := range append(made, log, log+".1") {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			d.log.Warn("remove what a migration here made", "guest", def.Name, "err", err)
		}
	}
	// Only when empty: the daemon may keep its own files there.
	os.Remove(filepath.Join(d.guestDir(def), "disks"))
	os.Remove(d.guestDir(def))
}

// MigrateOut implements driver.Migrator.
func (d *Driver) MigrateOut(ctx context.Context, def *guest.Definition, to driver.Incoming) (stats driver.MigrationStats, err error) {
	if !monitored.Process(def).Alive() {
		return stats, fmt.Errorf("guest %s: %w: only a running VM migrates live", def.Name, api.ErrNotRunning)
	}
	if err := migratable(def); err != nil {
		return stats, err
	}
	if !strings.HasPrefix(to.Migration, "tcp:") {
		return stats, fmt.Errorf("%w: migrate %s: target address %q is not tcp:IP:PORT", api.ErrInvalid, def.Name, to.Migration)
	}
	if _, err := netip.ParseAddrPort(to.NBD); err != nil {
		return stats, fmt.Errorf("%w: migrate %s: target disk server %q: %w", api.ErrInvalid, def.Name, to.NBD, err)
	}
	m, err := qmp.Dial(ctx, d.qmpSocket(def))
	if err != nil {
		return stats, fmt.Errorf("migrate %s: %w", def.Name, err)
	}
	defer m.Close()
	began := time.Now()
	var jobs []string
	defer func() {
		if err != nil && len(jobs) > 0 {
			d.dropMirrors(ctx, m, def, jobs)
		}
	}()
	for _, disk := range qcow2Disks(def) {
		export, ok := to.Exports[disk.Name]
		if !ok {
			return stats, fmt.Errorf("%w: migrate %s: the target serves no disk %s", api.ErrInvalid, def.Name, disk.Name)
		}
		job := mirrorJob + disk.Name
		mirror := qmp.DriveMirror{
			JobID: job, Device: driveID(disk.Name), Target: "nbd://" + to.NBD + "/" + url.PathEscape(export),
			Format: "raw", Sync: "full", Mode: "existing",
		}
		// Counted before it is sent: a ctx that ends meanwhile leaves
		// QEMU to start it all the same.
		jobs = append(jobs, job)
		if err := m.Run(ctx, mirror, nil); err != nil {
			return stats, fmt.Errorf("migrate %s: mirror disk %s to %s: %w", def.Name, disk.Name, to.NBD, err)
		}
	}
	diskBytes, err := waitMirrorsReady(ctx, m, jobs)
	if err != nil {
		return stats, fmt.Errorf("migrate %s: %w", def.Name, err)
	}
	info, err := d.migrate(ctx, m, def, to.Migration)
	if err != nil {
		return stats, err
	}
	// From here the source's CPUs are stopped: every write has reached
	// the mirrors, whose end leaves each copy whole. The guest's state is
	// at the target: what is left is done even when ctx has ended.
	completed := time.Now()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), migrateCancelWait)
	defer cancel()
	if err := endMirrors(ctx, m, jobs); err != nil {
		// The target's disks cannot be trusted: the guest runs on here.
		return stats, errors.Join(fmt.Errorf("migrate %s: end the disks' mirrors: %w", def.Name, err), d.resume(ctx, m, def))
	}
	jobs = nil
	stats.Downtime = time.Duration(info.Downtime)*time.Millisecond + time.Since(completed)
	stats.Bytes = diskBytes
	if info.RAM != nil {
		stats.Bytes += info.RAM.Transferred
	}
	// The guest lives on at the target: QEMU here ends (its monitor
	// records a clean exit, code 0).
	m.Run(ctx, qmp.Quit{}, nil)
	d.dropAgent(def.Name)
	quit, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if monitored.Process(def).Wait(quit) != nil {
		if err := monitored.Kill(ctx, def, "QEMU"); err != nil {
			d.log.Warn("end the migrated guest's QEMU", "guest", def.Name, "err", err)
		}
	}
	stats.Total = time.Since(began)
	d.log.Info("migrated a guest", "guest", def.Name, "total", stats.Total, "downtime", stats.Downtime, "bytes", stats.Bytes)
	return stats, nil
}

// waitMirrorsReady waits until every mirror job is in step with its disk
// and returns the bytes they copied.
func waitMirrorsReady(ctx context.Context, m *qmp.Client, jobs []string) (int64, error) {
	for {
		var running []qmp.BlockJobInfo
		if err := m.Run(ctx, qmp.QueryBlockJobs{}, &running); err != nil {
			return 0, err
		}
		byID := map[string]qmp.BlockJobInfo{}
		for _, j := range running {
			byID[j.Device] = j
		}
		ready, copied := true, int64(0)
		for _, id := range jobs {
			j, ok := byID[id]
			switch {
			case !ok:
				return 0, fmt.Errorf("mirror %s ended before its copy was whole: did the target go away?", id)
			case j.Error != "":
				return 0, fmt.Errorf("mirror %s: %s", id, j.Error)
			}
			ready = ready && j.Ready
			copied += j.Offset
		}
		if ready {
			return copied, nil
		}
		if err := sleep(ctx, migratePoll); err != nil {
			return 0, fmt.Errorf("mirror the disks: %w", err)
		}
	}
}

// migrate sends the machine's state to uri and waits for the end. When it
// fails, or ctx ends first, the guest runs on here.
func (d *Driver) migrate(ctx context.Context, m *qmp.Client, def *guest.Definition, uri string) (info qmp.MigrationInfo, err error) {
	if err := m.Run(ctx, qmp.MigrateSetParameters{MaxBandwidth: d.migrationBandwidth()}, nil); err != nil {
		return info, fmt.Errorf("migrate %s: %w", def.Name, err)
	}
	// With a return path the target says whether it loaded the state, and
	// QEMU reports completion only then: a target that failed leaves the
	// migration failed and the guest running here, never lost.
	if err := m.Run(ctx, qmp.MigrateSetCapabilities{Capabilities: map[string]bool{"return-path": true}}, nil); err != nil {
		return info, fmt.Errorf("migrate %s: %w", def.Name, err)
	}
	// Once ctx has ended, the migration is cancelled and followed (for at
	// most migrateCancelWait) until QEMU says how it ended: one that
	// completed meanwhile is done.
	wait, cancelled := ctx, false
	stopWait := func() {}
	defer func() { stopWait() }()
	cancelMigration := func() error {
		cancelled = true
		wait, stopWait = context.WithTimeout(context.WithoutCancel(ctx), migrateCancelWait)
		return m.Run(wait, qmp.MigrateCancel{}, nil)
	}
	if err := m.Run(ctx, qmp.Migrate{URI: uri}, nil); err != nil {
		if ctx.Err() == nil {
			return info, fmt.Errorf("migrate %s to %s: %w", def.Name, uri, err)
		}
		// QEMU may have begun it all the same.
		if err := cancelMigration(); err != nil {
			return info, fmt.Errorf("migrate %s: cancel: %w", def.Name, err)
		}
	}
	for {
		if err := m.Run(wait, qmp.QueryMigrate{}, &info); err != nil {
			if cancelled || ctx.Err() == nil {
				return info, fmt.Errorf("migrate %s: %w", def.Name, err)
			}
			if err := cancelMigration(); err != nil {
				return info, fmt.Errorf("migrate %s: cancel: %w", def.Name, err)
			}
			continue
		}
		switch info.Status {
		case "completed":
			// Even after a cancel that came too late: the guest is at the target.
			return info, nil
		case "failed", "cancelled":
			why := info.ErrorDesc
			if why == "" {
				why = "QEMU reports it " + info.Status
			}
			err := fmt.Errorf("migrate %s to %s: %s", def.Name, uri, why)
			if cancelled {
				err = fmt.Errorf("migrate %s: %w", def.Name, ctx.Err())
			}
			return info, errors.Join(err, d.resume(ctx, m, def))
		}
		if err := sleep(wait, migratePoll); err != nil {
			if cancelled {
				return info, fmt.Errorf("migrate %s: the cancelled migration did not end: %w", def.Name, err)
			}
			if err := cancelMigration(); err != nil {
				return info, fmt.Errorf("migrate %s: cancel: %w", def.Name, err)
			}
		}
	}
}

// migrationBandwidth is the cap on a migration's stream, in bytes/s.
func (d *Driver) migrationBandwidth() int64 {
	if d.opts.MigrationBandwidth > 0 {
		return d.opts.MigrationBandwidth
	}
	return migrateBandwidth
}

// resume makes sure a guest whose migration failed runs: QEMU restarts
// the CPUs it stopped itself, a guest stopped after completion is
// started again here.
func (d *Driver) resume(ctx context.Context, m *qmp.Client, def *guest.Definition) error {
	after, cancel := context.WithTimeout(context.WithoutCancel(ctx), contTimeout)
	defer cancel()
	var status qmp.StatusInfo
	if err := m.Run(after, qmp.QueryStatus{}, &status); err != nil {
		return fmt.Errorf("resume %s here: %w", def.Name, err)
	}
	if status.Running {
		return nil
	}
	if err := m.Run(after, qmp.Cont{}, nil); err != nil {
		return fmt.Errorf("resume %s here (it was %s): %w", def.Name, status.Status, err)
	}
	return nil
}

// endMirrors ends every mirror job of a completed migration and waits
// until each is gone: a ready mirror's cancel leaves its copy whole.
func endMirrors(ctx context.Context, m *qmp.Client, jobs []string) error {
	for _, id := range jobs {
		if err := m.Run(ctx, qmp.BlockJobCancel{Device: id}, nil); err != nil {
			return err
		}
	}
	return waitJobsGone(ctx, m, jobs)
}

// dropMirrors ends the mirror jobs of a failed migration at once.
func (d *Driver) dropMirrors(ctx context.Context, m *qmp.Client, def *guest.Definition, jobs []string) {
	after, cancel := context.WithTimeout(context.WithoutCancel(ctx), migrateCancelWait)
	defer cancel()
	for _, id := range jobs {
		m.Run(after, qmp.BlockJobCancel{Device: id, Force: true}, nil)
	}
	if err := waitJobsGone(after, m, jobs); err != nil {
		d.log.Warn("end the disk mirrors of a failed migration", "guest", def.Name, "err", err)
	}
}

// waitJobsGone waits until no job in jobs runs.
func waitJobsGone(ctx context.Context, m *qmp.Client, jobs []string) error {
	for {
		var running []qmp.BlockJobInfo
		if err := m.Run(ctx, qmp.QueryBlockJobs{}, &running); err != nil {
			return err
		}
		left := 0
		for _, j := range running {
			for _, id := range jobs {
				if j.Device == id {
					left++
				}
			}
		}
		if left == 0 {
			return nil
		}
		if err := sleep(ctx, migratePoll); err != nil {
			return fmt.Errorf("%d mirrors did not end: %w", left, err)
		}
	}
}

// FinishIncoming implements driver.Migrator: once the migration has
// landed, the NBD server stops and the guest's CPUs resume.
func (d *Driver) FinishIncoming(ctx context.Context, def *guest.Definition) error {
	if !monitored.Process(def).Alive() {
		return fmt.Errorf("migrate %s here: QEMU waiting for it has exited: %s", def.Name, lastConsoleLines(d.ConsoleLog(def)))
	}
	m, err := qmp.Dial(ctx, d.qmpSocket(def))
	if err != nil {
		return fmt.Errorf("migrate %s here: %w", def.Name, err)
	}
	defer m.Close()
	for {
		var status qmp.StatusInfo
		if err := m.Run(ctx, qmp.QueryStatus{}, &status); err != nil {
			return fmt.Errorf("migrate %s here: %w", def.Name, err)
		}
		if status.Status != "inmigrate" {
			break
		}
		if err := sleep(ctx, migratePoll); err != nil {
			return fmt.Errorf("migrate %s here: the migration did not arrive: %w", def.Name, err)
		}
	}
	if err := m.Run(ctx, qmp.NBDServerStop{}, nil); err != nil {
		return fmt.Errorf("migrate %s here: %w", def.Name, err)
	}
	if err := m.Run(ctx, qmp.Cont{}, nil); err != nil {
		return fmt.Errorf("migrate %s here: resume: %w", def.Name, err)
	}
	// The guest's agent answers on this QEMU's port, to a new connection.
	d.dropAgent(def.Name)
	if t, _, err := d.template(def); err == nil && !t.Boot.NoAgent {
		reach, cancel := context.WithTimeout(ctx, agentWait)
		defer cancel()
		if _, err := d.agent(reach, def); err != nil {
			d.log.Warn("the migrated guest's agent does not answer yet", "guest", def.Name, "err", err)
		}
	}
	return nil
}

// AbortIncoming implements driver.Migrator.
func (d *Driver) AbortIncoming(ctx context.Context, def *guest.Definition) error {
	if err := d.kill(ctx, def); err != nil {
		return fmt.Errorf("abort the migration of %s here: %w", def.Name, err)
	}
	if _, err := d.Cleanup(ctx, def); err != nil {
		return fmt.Errorf("abort the migration of %s here: %w", def.Name, err)
	}
	var disks []string
	for _, disk := range qcow2Disks(def) {
		disks = append(disks, d.diskPath(def, disk))
	}
	d.removeIncoming(def, disks)
	return nil
}

// sleep waits for pause, or fails when ctx ends first.
func sleep(ctx context.Context, pause time.Duration) error {
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
