package vmdef

import (
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ParseXL reads a Xen xl.cfg guest definition (xl.cfg(5), with the disk
// syntax of xl-disk-configuration(5) and the vif syntax of
// xl-network-configuration(5)). Settings that only tune Xen (on_reboot,
// cpu_weight...) are ignored; devices polyvisor does not carry become
// warnings.
func ParseXL(data []byte) (*Machine, error) {
	if err := checkTextSize("xl", data); err != nil {
		return nil, err
	}
	cfg, err := readXL(data)
	if err != nil {
		return nil, err
	}
	m := &Machine{Source: "xl", Name: cfg.scalar("name")}
	// vcpus is what is online at boot; maxvcpus, when larger, allows hot-plug.
	for _, key := range []string{"vcpus", "maxvcpus"} {
		if v := cfg.scalar(key); v != "" {
			if m.CPUs, err = parseCPUs("xl", key, xlDecimal(v)); err != nil {
				return nil, err
			}
			break
		}
	}
	if v := cfg.scalar("memory"); v != "" {
		if m.Memory, err = parseMemory("xl", "memory", xlDecimal(v), mib); err != nil {
			return nil, err
		}
	}
	if err := xlBoot(cfg, m); err != nil {
		return nil, err
	}
	if err := xlDisks(cfg, m); err != nil {
		return nil, err
	}
	if err := xlNICs(cfg, m); err != nil {
		return nil, err
	}
	xlOtherDevices(cfg, m)
	return m, nil
}

// xlDecimal reads a number as xl does, like strtol with base 0 (0x10 is
// hex, 010 octal), and writes it in decimal; what it cannot read it returns
// as it is, for the caller to refuse by name.
func xlDecimal(v string) string {
	v = strings.TrimSpace(v)
	if strings.Contains(v, "_") { // Go's digit separators; not xl's
		return v
	}
	n, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		return v
	}
	return strconv.FormatInt(n, 10)
}

// xlBoot reads the guest type and its firmware. A PV or PVH guest boots a
// kernel that xl or its bootloader (pygrub) picks from outside; polyvisor
// boots every guest through firmware, so that arrangement is a warning.
func xlBoot(cfg xlConfig, m *Machine) error {
	guestType := strings.ToLower(cfg.scalar("type"))
	if guestType == "" {
		// Before type= there was builder=; with neither, xl builds PV.
		guestType = "pv"
		if strings.EqualFold(cfg.scalar("builder"), "hvm") {
			guestType = "hvm"
		}
	}
	if guestType != "hvm" && guestType != "pv" && guestType != "pvh" {
		return fmt.Errorf("xl: type = %s: not a guest type xl knows; use hvm, pv or pvh", clip(guestType))
	}
	kernel := cfg.scalar("kernel")
	pvBoot := guestType != "hvm"
	for _, key := range []string{"firmware", "bios"} {
		switch fw := strings.ToLower(cfg.scalar(key)); fw {
		case "":
		case "uefi", "ovmf":
			m.Firmware = FirmwareUEFI
		case "bios", "seabios", "rombios":
			m.Firmware = FirmwareBIOS
		case "pvgrub32", "pvgrub64":
			pvBoot = true
		default:
			m.Warnf("%s = %s: a custom firmware is not imported; the guest gets polyvisor's", key, clip(fw))
		}
	}
	switch {
	case pvBoot:
		m.Warnf("Xen %s guest (bootloader %s, kernel %s): that boot arrangement is not mapped; the disk will be booted by firmware and needs a bootloader installed in it",
			strings.ToUpper(guestType), orUnstated(cfg.scalar("bootloader")), orUnstated(kernel))
	case kernel != "" && path.Base(kernel) != "hvmloader":
		// Old xm configurations name hvmloader, Xen's own HVM firmware, as
		// the kernel; anything else is a direct kernel boot.
		m.Warnf("direct kernel boot (kernel %s) is not imported; the disk will be booted by firmware and needs a bootloader installed in it", clip(kernel))
	}
	return nil
}

// xlDisk is one disk spec, its parts named as in xl-disk-configuration(5).
type xlDisk struct {
	target, format, vdev, access, devtype, backendtype string
}

// parseXLDisk reads a disk spec: comma-separated key=value pairs, flags,
// and positional parameters that fill, in order, whichever of target,
// format, vdev and access are not yet given. target= takes the rest of the
// spec, commas included. The deprecated xm forms are read too: a prefix on
// the target (phy:/dev/vg/lv, file:/path, tap:aio:/path) that stands in for
// the format, so that phy:/dev/vg/lv,xvda,w is target, vdev, access; and
// hdc:cdrom for a CD-ROM.
func parseXLDisk(spec string) (xlDisk, error) {
	var d xlDisk
	positional := []*string{&d.target, &d.format, &d.vdev, &d.access}
	given := make([]bool, len(positional))
	for rest := spec; rest != ""; {
		rest = strings.TrimLeft(rest, " \t")
		if after, ok := strings.CutPrefix(rest, "target="); ok {
			d.target, given[0] = stripXLPrefixes(after, &d), true
			break
		}
		var item string
		item, rest, _ = strings.Cut(rest, ",")
		item = strings.TrimSpace(item)
		if key, value, ok := strings.Cut(item, "="); ok {
			value = strings.TrimSpace(value)
			switch strings.TrimSpace(key) {
			case "format":
				d.format, given[1] = value, true
			case "vdev":
				d.vdev, given[2] = value, true
			case "access":
				d.access, given[3] = value, true
			case "devtype":
				d.devtype = value
			case "backendtype":
				d.backendtype = value
			}
			continue // script=, discard... change nothing polyvisor keeps
		}
		switch item {
		case "cdrom":
			d.devtype = "cdrom"
			continue
		case "discard", "no-discard", "direct-io-safe", "colo", "trusted", "untrusted":
			continue
		}
		slot := slices.Index(given, false)
		if slot < 0 {
			return d, fmt.Errorf("disk %s: more than four positional parameters (target, format, vdev, access)", clip(spec))
		}
		*positional[slot], given[slot] = item, true
		if slot == 0 {
			stripped := stripXLPrefixes(item, &d)
			// A deprecated prefix takes the format's place.
			given[1] = given[1] || stripped != item
			d.target = stripped
		}
	}
	if vdev, ok := strings.CutSuffix(d.vdev, ":cdrom"); ok {
		d.vdev, d.devtype = vdev, "cdrom"
	}
	return d, nil
}

// stripXLPrefixes removes the deprecated prefixes of a target, recording
// what they say: phy: a host block device, file: a raw file, raw:, qcow:,
// qcow2:, vhd: the format; tap:, tap2:, tapdisk:, aio: and ioemu: only
// pick a Xen backend.
func stripXLPrefixes(target string, d *xlDisk) string {
	for {
		prefix, after, ok := strings.Cut(target, ":")
		if !ok {
			return target
		}
		switch prefix {
		case "phy":
			d.backendtype = "phy"
		case "file":
			d.format = firstNonEmpty(d.format, "raw")
		case "raw", "qcow", "qcow2", "vhd":
			d.format = firstNonEmpty(d.format, prefix)
		case "tap", "tap2", "tapdisk", "aio", "ioemu":
		default:
			return target
		}
		target = after
	}
}

func xlDisks(cfg xlConfig, m *Machine) error {
	var disks []xlDisk
	for _, spec := range cfg.items("disk") {
		d, err := parseXLDisk(spec)
		if err != nil {
			return fmt.Errorf("xl: %w", err)
		}
		disks = append(disks, d)
	}
	sort.SliceStable(disks, func(i, j int) bool { return xlDiskIndex(disks[i].vdev) < xlDiskIndex(disks[j].vdev) })
	for _, d := range disks {
		vdev := orUnstated(d.vdev)
		switch {
		case d.devtype == "cdrom":
			m.Warnf("CD-ROM %s (%s) is not imported", vdev, orEmpty(d.target))
		case d.target == "":
			m.Warnf("disk %s names no target; not imported", vdev)
		case d.backendtype == "phy" || !strings.HasPrefix(d.target, "/") || strings.HasPrefix(d.target, "/dev/"):
			// xl reads a target that is not an absolute path under /dev.
			device := d.target
			if !strings.HasPrefix(device, "/") {
				device = "/dev/" + device
			}
			m.Warnf("disk %s is the host block device %s and cannot be imported; copy it into an image file first (qemu-img convert)", vdev, clip(device))
			m.Disks = append(m.Disks, Disk{Path: device, Device: DeviceBlock})
		default:
			// xl reads a disk whose format is not stated as raw, and so does
			// this: probing would let a guest's data pick the format.
			format := strings.ToLower(firstNonEmpty(d.format, "raw"))
			m.Disks = append(m.Disks, Disk{Path: d.target, Format: format})
			if xlIsPartition(d.vdev) {
				m.Warnf("disk %s is attached as a partition, so its image holds a bare filesystem, which firmware cannot boot", vdev)
			}
		}
	}
	return nil
}

// xlUnknownDisk is xlDiskIndex's rank for a vdev it cannot read.
const xlUnknownDisk = 1 << 30

// xlDiskIndex orders disks the way HVM firmware finds them: by the letters
// of the vdev (xvda, hdb, sdc: a before b...), unknown names last.
func xlDiskIndex(vdev string) int {
	v := strings.ToLower(vdev)
	for _, prefix := range []string{"xvd", "hd", "sd"} {
		letters, ok := strings.CutPrefix(v, prefix)
		if !ok {
			continue
		}
		letters = strings.TrimRight(letters, "0123456789")
		if letters == "" || len(letters) > 3 {
			return xlUnknownDisk
		}
		n := 0
		for _, c := range letters {
			if c < 'a' || c > 'z' {
				return xlUnknownDisk
			}
			n = n*26 + int(c-'a'+1)
		}
		return n
	}
	return xlUnknownDisk
}

// xlIsPartition tells a vdev that names a partition (xvda2, hda1), which
// PV guests use, from one that names a whole disk.
func xlIsPartition(vdev string) bool {
	n := len(vdev)
	return n > 0 && '0' <= vdev[n-1] && vdev[n-1] <= '9' && xlDiskIndex(vdev) < xlUnknownDisk
}

// xlNICs reads vif = [ 'mac=..., bridge=..., model=...', ... ].
func xlNICs(cfg xlConfig, m *Machine) error {
	for i, spec := range cfg.items("vif") {
		var nic NIC
		for _, item := range strings.Split(spec, ",") {
			key, value, _ := strings.Cut(item, "=")
			value = strings.TrimSpace(value)
			switch strings.TrimSpace(key) {
			case "mac":
				mac, err := CanonicalMAC(value)
				if err != nil {
					return fmt.Errorf("xl: vif %d: %w; correct mac=, or delete it to get a new one", i+1, err)
				}
				nic.MAC = mac
			case "bridge":
				nic.Network = value
			case "model":
				nic.Model = value
			}
		}
		m.NICs = append(m.NICs, nic)
	}
	return nil
}

// xlOtherDevices warns for the settings that give the guest hardware
// polyvisor does not carry. The display and console settings (vfb, vnc,
// sdl, spice, vga, videoram, vkb, channel, a pty serial port, a USB
// tablet) are left out silently: polyvisor provides its own console.
func xlOtherDevices(cfg xlConfig, m *Machine) {
	for _, dev := range cfg.items("pci") {
		m.Warnf("PCI pass-through %s is not imported", clip(dev))
	}
	for _, key := range []string{"usbctrl", "usbdev"} {
		for _, spec := range cfg.items(key) {
			m.Warnf("USB %s (%s) is not imported", strings.TrimPrefix(key, "usb"), clip(spec))
		}
	}
	for _, dev := range cfg.items("usbdevice") {
		if dev != "tablet" && dev != "mouse" && dev != "keyboard" {
			m.Warnf("USB device %s is not imported", clip(dev))
		}
	}
	if hw := cfg.scalar("soundhw"); hw != "" {
		m.Warnf("sound card (%s) is not imported", clip(hw))
	}
	for _, spec := range cfg.items("vsnd") {
		m.Warnf("PV sound device (%s) is not imported", clip(spec))
	}
	for _, spec := range cfg.items("vtpm") {
		m.Warnf("virtual TPM (%s) is not imported: secrets the guest sealed in it need their recovery key", clip(spec))
	}
	for _, spec := range cfg.items("p9") {
		m.Warnf("shared folder (p9 %s) is not imported", clip(spec))
	}
	for _, serial := range cfg.items("serial") {
		if serial != "pty" {
			m.Warnf("serial port %s is not imported", clip(serial))
		}
	}
	for _, key := range []string{"dtdev", "iomem", "ioports", "irqs"} {
		if items := cfg.items(key); len(items) > 0 {
			m.Warnf("host resource pass-through (%s) is not imported", key)
		}
	}
}
