package vmdef

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/polyvisor/polyvisor/internal/lazyre"
)

// ParseVMX reads a VMware .vmx file (Workstation, Fusion, ESXi): lines of
// key = "value", keys case-insensitive, '#' comments. Keys that change
// nothing polyvisor carries (uuids, PCI slot numbers, tools settings) are
// ignored; every device that is present and not mapped becomes a warning.
func ParseVMX(data []byte) (*Machine, error) {
	if err := checkTextSize("vmx", data); err != nil {
		return nil, err
	}
	cfg, err := readVMX(data)
	if err != nil {
		return nil, err
	}
	m := &Machine{Source: "vmx", Name: cfg.value("displayname")}
	// VMware writes numvcpus only when it is not its default, 1.
	m.CPUs = 1
	if e, ok := cfg["numvcpus"]; ok {
		if m.CPUs, err = parseCPUs("vmx", e.key, e.value); err != nil {
			return nil, err
		}
	}
	if e, ok := cfg["memsize"]; ok {
		if m.Memory, err = parseMemory("vmx", e.key, e.value, mib); err != nil {
			return nil, err
		}
	}
	m.OS = cfg.value("guestos")
	m.OSFamily = OSFamilyOf(m.OS)
	// Fusion on Apple silicon names its guests arm-debian12-64 and so on;
	// every other guestOS is an x86 one, which the file does not say.
	if strings.HasPrefix(strings.ToLower(m.OS), "arm-") {
		m.Arch = "aarch64"
	}
	vmxFirmware(cfg, m)
	vmxEncoding(cfg, data, m)
	vmxDisks(cfg, m)
	if err := vmxNICs(cfg, m); err != nil {
		return nil, err
	}
	vmxOtherDevices(cfg, m)
	return m, nil
}

// vmxEntry is one key = value line.
type vmxEntry struct {
	key   string // as written, for messages
	value string // unquoted, |XX escapes decoded
}

// vmxConfig holds a .vmx by lower-case key. When a key repeats, the last
// line wins.
type vmxConfig map[string]vmxEntry

func (c vmxConfig) value(key string) string { return c[key].value }

// isTrue reads a VMware boolean; VMware writes "TRUE" and "FALSE".
func (c vmxConfig) isTrue(key string) bool {
	switch strings.ToLower(strings.TrimSpace(c[key].value)) {
	case "true", "yes", "1":
		return true
	}
	return false
}

func (c vmxConfig) isFalse(key string) bool {
	switch strings.ToLower(strings.TrimSpace(c[key].value)) {
	case "false", "no", "0":
		return true
	}
	return false
}

// sortedKeys returns the lower-case keys in order, so that warnings come
// out the same on every run.
func (c vmxConfig) sortedKeys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func readVMX(data []byte) (vmxConfig, error) {
	cfg := vmxConfig{}
	text := strings.TrimPrefix(string(data), "\ufeff")
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		key, rest, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("vmx line %d: %s is not a key = \"value\" line", i+1, clip(line))
		}
		key = strings.TrimSpace(key)
		if key == "" || strings.ContainsAny(key, " \t\"") {
			return nil, fmt.Errorf("vmx line %d: %s is not a key; a key is one word such as memsize", i+1, clip(key))
		}
		value, err := vmxValue(strings.TrimSpace(rest))
		if err != nil {
			return nil, fmt.Errorf("vmx line %d: value of %s: %w", i+1, clip(key), err)
		}
		cfg[strings.ToLower(key)] = vmxEntry{key: key, value: value}
	}
	return cfg, nil
}

// vmxValue unquotes a value. VMware always quotes; an unquoted value, as
// some hand-written files have, is taken as it stands.
func vmxValue(s string) (string, error) {
	if !strings.HasPrefix(s, `"`) {
		return unescapeVMX(s), nil
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", errors.New("the closing quote is missing")
	}
	if after := strings.TrimSpace(s[end+2:]); after != "" && after[0] != '#' {
		return "", fmt.Errorf("%s follows the closing quote", clip(after))
	}
	return unescapeVMX(s[1 : end+1]), nil
}

// unescapeVMX decodes VMware's escapes: a '|' and two hex digits stand for
// that byte, so a '"' inside a value is written |22 and a '|' is |7C.
func unescapeVMX(s string) string {
	if !strings.Contains(s, "|") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '|' && i+2 < len(s) && isHexDigit(s[i+1]) && isHexDigit(s[i+2]) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func vmxFirmware(cfg vmxConfig, m *Machine) {
	switch fw := strings.ToLower(cfg.value("firmware")); fw {
	case "efi":
		m.Firmware = FirmwareUEFI
	case "bios":
		m.Firmware = FirmwareBIOS
	case "":
	default:
		m.Warnf("firmware = %s is not one polyvisor knows (efi, bios); BIOS is assumed", clip(fw))
	}
	if m.Firmware != FirmwareUEFI {
		return
	}
	if cfg.isTrue("uefi.secureboot.enabled") {
		m.Warnf("UEFI Secure Boot is enabled in the source; polyvisor does not carry that setting")
	}
	if nvram := cfg.value("nvram"); nvram != "" {
		m.Warnf("UEFI variables (nvram = %s) are not imported: the guest's boot entries are lost and it boots through the removable-media path", clip(nvram))
	}
}

// vmxEncoding warns when non-ASCII bytes are read under an encoding other
// than UTF-8: they are kept as raw bytes, not converted.
func vmxEncoding(cfg vmxConfig, data []byte, m *Machine) {
	enc := strings.ToLower(cfg.value(".encoding"))
	if enc == "" || enc == "utf-8" || enc == "utf8" {
		return
	}
	for _, c := range data {
		if c >= 0x80 {
			m.Warnf(".encoding = %s: non-ASCII characters in names and paths are kept as raw bytes and may not match the files on disk", clip(enc))
			return
		}
	}
}

// vmxBusRank orders the disk buses the way VMware's default boot prefers
// their first unit: scsi, sata, ide, nvme.
func vmxBusRank(bus string) int {
	switch bus {
	case "scsi":
		return 0
	case "sata":
		return 1
	case "ide":
		return 2
	}
	return 3
}

var vmxUnitPresent = lazyre.New(`^(scsi|sata|ide|nvme)(\d{1,3}):(\d{1,3})\.present$`)

// vmxUnit is one device on a disk bus, a hard disk or a CD-ROM.
type vmxUnit struct {
	name             string // lower-case, as in bios.hddOrder: "scsi0:1"
	label            string // as the file spells it, for messages
	bus              int    // vmxBusRank
	controller, unit int
}

func vmxDisks(cfg vmxConfig, m *Machine) {
	var units []vmxUnit
	for _, k := range cfg.sortedKeys() {
		match := vmxUnitPresent().FindStringSubmatch(k)
		if match == nil || !cfg.isTrue(k) {
			continue
		}
		// A disk on a controller that is switched off is not attached.
		if cfg.isFalse(match[1] + match[2] + ".present") {
			continue
		}
		controller, _ := strconv.Atoi(match[2])
		unit, _ := strconv.Atoi(match[3])
		name := strings.TrimSuffix(k, ".present")
		units = append(units, vmxUnit{
			name: name, label: strings.TrimSuffix(cfg[k].key, ".present"),
			bus: vmxBusRank(match[1]), controller: controller, unit: unit,
		})
	}
	sortVMXUnits(units, vmxBootRank(cfg))
	for _, u := range units {
		deviceType := strings.ToLower(cfg.value(u.name + ".devicetype"))
		file := cfg.value(u.name + ".filename")
		switch {
		case deviceType == "" || deviceType == "disk" || strings.HasSuffix(deviceType, "harddisk"):
			if file == "" {
				m.Warnf("disk %s names no file (%s.fileName); not imported", u.label, u.label)
				continue
			}
			d := Disk{Path: file}
			if strings.HasSuffix(strings.ToLower(file), ".vmdk") {
				d.Format = "vmdk"
			}
			m.Disks = append(m.Disks, d)
		case strings.Contains(deviceType, "cdrom"):
			what := clip(file)
			if deviceType != "cdrom-image" {
				what = "a host drive"
			}
			m.Warnf("CD-ROM %s (%s) is not imported", u.label, what)
		case deviceType == "rawdisk" || strings.HasSuffix(deviceType, "passthru"):
			m.Warnf("disk %s is a host disk (deviceType %s) and cannot be imported; copy it into an image file first", u.label, clip(deviceType))
			m.Disks = append(m.Disks, Disk{Path: firstNonEmpty(file, u.label), Device: DeviceRaw})
		default:
			m.Warnf("%s has deviceType %s, which is not a disk; not imported", u.label, clip(deviceType))
		}
	}
}

// vmxBootRank reads bios.hddOrder and bios.bootOrder: the units they name,
// in the order they name them. Class names there (hdd, cdrom) rank nothing.
func vmxBootRank(cfg vmxConfig) map[string]int {
	rank := map[string]int{}
	for _, key := range []string{"bios.hddorder", "bios.bootorder"} {
		for _, item := range strings.Split(cfg.value(key), ",") {
			item = strings.ToLower(strings.TrimSpace(item))
			if _, seen := rank[item]; item != "" && !seen {
				rank[item] = len(rank)
			}
		}
	}
	return rank
}

// sortVMXUnits puts the boot disk first: the units the boot order names,
// in its order; then the first unit of the first controller of each bus,
// scsi0:0 before sata0:0 before ide0:0 before nvme0:0; then the rest by
// bus, controller and unit.
func sortVMXUnits(units []vmxUnit, bootRank map[string]int) {
	key := func(u vmxUnit) [5]int {
		named, ok := bootRank[u.name]
		if !ok {
			named = len(bootRank)
		}
		primary := 1
		if u.controller == 0 && u.unit == 0 {
			primary = 0
		}
		return [5]int{named, primary, u.bus, u.controller, u.unit}
	}
	sort.SliceStable(units, func(i, j int) bool {
		a, b := key(units[i]), key(units[j])
		for n := range a {
			if a[n] != b[n] {
				return a[n] < b[n]
			}
		}
		return false
	})
}

var vmxEthernetPresent = lazyre.New(`^ethernet(\d{1,3})\.present$`)

func vmxNICs(cfg vmxConfig, m *Machine) error {
	type ethernet struct {
		index int
		name  string // lower-case key prefix
		label string
	}
	var nics []ethernet
	for _, k := range cfg.sortedKeys() {
		match := vmxEthernetPresent().FindStringSubmatch(k)
		if match == nil || !cfg.isTrue(k) {
			continue
		}
		index, _ := strconv.Atoi(match[1])
		nics = append(nics, ethernet{index: index, name: strings.TrimSuffix(k, ".present"), label: strings.TrimSuffix(cfg[k].key, ".present")})
	}
	sort.Slice(nics, func(i, j int) bool { return nics[i].index < nics[j].index })
	for _, e := range nics {
		var mac string
		switch addressType := strings.ToLower(cfg.value(e.name + ".addresstype")); addressType {
		case "static":
			mac = cfg.value(e.name + ".address")
			if mac == "" {
				m.Warnf("%s has a static MAC address but no %s.address; it gets a new address", e.label, e.label)
			}
		case "", "generated", "vpx":
			mac = cfg.value(e.name + ".generatedaddress")
		default:
			m.Warnf("%s.addressType = %s is not one polyvisor knows; the NIC gets a new MAC address", e.label, clip(addressType))
		}
		if mac != "" {
			canonical, err := CanonicalMAC(mac)
			if err != nil {
				return fmt.Errorf("vmx: %s: %w; correct it, or delete the address line to get a new one", e.label, err)
			}
			mac = canonical
		}
		m.NICs = append(m.NICs, NIC{MAC: mac, Model: cfg.value(e.name + ".virtualdev"), Network: vmxNetwork(cfg, e.name)})
	}
	return nil
}

// vmxNetwork names what a NIC connects to: an ESXi port group
// (networkName), a Workstation virtual network (vnet, used when
// connectionType is custom), or the kind of connection (nat, bridged,
// hostonly).
func vmxNetwork(cfg vmxConfig, prefix string) string {
	if name := cfg.value(prefix + ".networkname"); name != "" {
		return name
	}
	connection := cfg.value(prefix + ".connectiontype")
	if vnet := cfg.value(prefix + ".vnet"); vnet != "" && (connection == "" || strings.EqualFold(connection, "custom")) {
		return vnet
	}
	return connection
}

var (
	// vmxHandled are the devices vmxDisks and vmxNICs read, and the disk
	// controllers, which carry nothing polyvisor keeps: it picks its own.
	vmxHandled = lazyre.New(`^((scsi|sata|ide|nvme)\d{1,3}(:\d{1,3})?|ethernet\d{1,3})$`)
	// vmxIgnored are present in nearly every VM and mean nothing outside
	// VMware, or are the display, which polyvisor's own console replaces:
	// VMCI (host-guest channel, which polyvisor's guest agent replaces), PCI
	// bridges, the HPET timer, the SVGA adapter, and the devices plugged
	// into a USB controller (the controller's warning covers them).
	vmxIgnored = lazyre.New(`^(vmci\d*|pcibridge\d+|hpet\d+|svga|(usb|ehci|usb_xhci):\d+)$`)
	vmxPort    = lazyre.New(`^(serial|parallel)\d{1,3}$`)
	vmxShared  = lazyre.New(`^sharedfolder\d{1,3}$`)
	vmxPCI     = lazyre.New(`^pcipassthru\d{1,3}$`)
	vmxFloppy  = lazyre.New(`^(floppy\d{1,3})\.`)
)

// vmxOtherDevices warns for every device that is present and not mapped.
func vmxOtherDevices(cfg vmxConfig, m *Machine) {
	var usb []string
	floppies := map[string]bool{}
	for _, k := range cfg.sortedKeys() {
		if match := vmxFloppy().FindStringSubmatch(k); match != nil {
			floppies[match[1]] = true
		}
		if !strings.HasSuffix(k, ".present") || !cfg.isTrue(k) {
			continue
		}
		device := strings.TrimSuffix(k, ".present")
		label := strings.TrimSuffix(cfg[k].key, ".present")
		switch {
		case vmxHandled().MatchString(device), vmxIgnored().MatchString(device), vmxFloppy().MatchString(k):
		case device == "sound":
			m.Warnf("sound card (%s) is not imported", orUnstated(cfg.value("sound.virtualdev")))
		case device == "usb" || device == "ehci" || device == "usb_xhci":
			usb = append(usb, label)
		case vmxPort().MatchString(device):
			m.Warnf("%s port %s (%s) is not imported", strings.TrimRight(device, "0123456789"), label, orUnstated(cfg.value(device+".filetype")))
		case vmxShared().MatchString(device):
			m.Warnf("shared folder %s (host path %s) is not imported", label, clip(cfg.value(device+".hostpath")))
		case vmxPCI().MatchString(device):
			m.Warnf("PCI pass-through device %s is not imported", label)
		case device == "vtpm":
			m.Warnf("virtual TPM (vtpm) is not imported: secrets the guest sealed in it (BitLocker, LUKS with TPM) need their recovery key")
		default:
			m.Warnf("%s = TRUE: a device polyvisor does not know; not imported", clip(label+".present"))
		}
	}
	if len(usb) > 0 {
		m.Warnf("USB controllers (%s) are not imported", strings.Join(usb, ", "))
	}
	names := make([]string, 0, len(floppies))
	for f := range floppies {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		// A floppy drive is present unless the file says it is not.
		if !cfg.isFalse(f + ".present") {
			m.Warnf("floppy drive %s (%s) is not imported", f, orUnstated(cfg.value(f+".filename")))
		}
	}
}
