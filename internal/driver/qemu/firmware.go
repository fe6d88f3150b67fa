package qemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// firmwareDirs hold QEMU's firmware descriptors (docs/interop/firmware.json in QEMU), the
// way libvirt finds firmware: a file in a later directory replaces one of the same name in
// an earlier one, and the descriptors are tried in file name order.
var firmwareDirs = []string{"/usr/share/qemu/firmware", "/etc/qemu/firmware"}

// firmwareDescriptor is what polyvisor reads of a descriptor.
type firmwareDescriptor struct {
	InterfaceTypes []string `json:"interface-types"`
	Mapping        struct {
		Device     string       `json:"device"`
		Executable firmwareFile `json:"executable"`
		NVRAM      firmwareFile `json:"nvram-template"`
	} `json:"mapping"`
	Targets []struct {
		Architecture string   `json:"architecture"`
		Machines     []string `json:"machines"`
	} `json:"targets"`
	Features []string `json:"features"`
}

type firmwareFile struct {
	Filename string `json:"filename"`
	Format   string `json:"format"`
}

// uefiFirmware is a UEFI build for pflash: its code, read-only and shared, and the template
// of the variable store each guest gets a copy of.
type uefiFirmware struct {
	Code, VarsTemplate string
	Vars               string // the guest's copy, once it has one
}

// unwantedFeatures rule a descriptor out: Secure Boot with enrolled keys refuses our
// unsigned GRUB, and SMM needs machine options we do not give.
var unwantedFeatures = []string{"secure-boot", "enrolled-keys", "requires-smm"}

// findUEFI returns the first UEFI firmware the descriptors in dirs offer for machine (q35)
// of QEMU architecture qemuArch (x86_64) on pflash.
func findUEFI(dirs []string, qemuArch, machine string) (uefiFirmware, error) {
	files := map[string]string{}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if filepath.Ext(e.Name()) == ".json" {
				files[e.Name()] = filepath.Join(dir, e.Name())
			}
		}
	}
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		data, err := os.ReadFile(files[name])
		if err != nil {
			continue
		}
		var d firmwareDescriptor
		if json.Unmarshal(data, &d) != nil || !d.serves(qemuArch, machine) {
			continue
		}
		fw := uefiFirmware{Code: d.Mapping.Executable.Filename, VarsTemplate: d.Mapping.NVRAM.Filename}
		if _, err := os.Stat(fw.Code); err != nil {
			continue
		}
		if _, err := os.Stat(fw.VarsTemplate); err != nil {
			continue
		}
		return fw, nil
	}
	why := "none of them offers UEFI without Secure Boot on pflash"
	if _, err := hostreq.Lookup(hostreq.OVMFDescriptor); err != nil {
		why = err.Error()
	}
	return uefiFirmware{}, fmt.Errorf("%w: no UEFI firmware for %s %s among QEMU's firmware descriptors (%v): %s", api.ErrNotAvailable, qemuArch, machine, dirs, why)
}

// serves reports whether the descriptor is plain UEFI on raw pflash for machine of qemuArch.
func (d firmwareDescriptor) serves(qemuArch, machine string) bool {
	if !slices.Contains(d.InterfaceTypes, "uefi") || d.Mapping.Device != "flash" ||
		d.Mapping.NVRAM.Filename == "" || (d.Mapping.Executable.Format != "" && d.Mapping.Executable.Format != "raw") {
		return false
	}
	for _, f := range unwantedFeatures {
		if slices.Contains(d.Features, f) {
			return false
		}
	}
	for _, t := range d.Targets {
		if t.Architecture != qemuArch {
			continue
		}
		for _, pattern := range t.Machines {
			// Descriptors name versioned machines (pc-q35-*); "q35" is the newest of them.
			if ok, _ := path.Match(pattern, "pc-"+machine+"-latest"); ok {
				return true
			}
		}
	}
	return false
}
