package ovf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/internal/vmdef"
	"github.com/polyvisor/polyvisor/pkg/api"
)

func exportSpec() ExportSpec {
	return ExportSpec{
		Name: "web", CPUs: 2, Memory: 3*gib + 1, Firmware: vmdef.FirmwareUEFI, OSType: "debian12_64Guest",
		Disk: ExportDisk{Href: "web-disk1.vmdk", FileSize: 12345, Capacity: 10 * gib},
		NICs: []vmdef.NIC{{MAC: "52:54:00:AB:CD:EF", Network: "lan", Model: "virtio"}, {Model: "vmxnet3"}},
	}
}

func TestWriteThenParse(t *testing.T) {
	out, err := Write(exportSpec())
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(out)
	if err != nil {
		t.Fatalf("Parse(Write()): %v\n%s", err, out)
	}
	want := vmdef.Machine{
		Source: "ovf", Name: "web", CPUs: 2, Memory: 3*gib + 1<<20, Firmware: vmdef.FirmwareUEFI,
		OS: "debian12_64Guest", OSFamily: vmdef.OSLinux,
		Disks: []vmdef.Disk{{Path: "web-disk1.vmdk", Format: "vmdk", Capacity: 10 * gib}},
		NICs: []vmdef.NIC{
			{MAC: "52:54:00:ab:cd:ef", Network: "lan", Model: "e1000"},
			{Network: "VM Network", Model: "vmxnet3"},
		},
	}
	if !reflect.DeepEqual(d.Machine, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", d.Machine, want)
	}
	if want := []File{{"file1", "web-disk1.vmdk", 12345}}; !reflect.DeepEqual(d.Files, want) {
		t.Errorf("files %+v; want %+v", d.Files, want)
	}
	for _, s := range []string{
		`<?xml version="1.0" encoding="UTF-8"?>`,
		`<Envelope ovf:version="1.0" xmlns="http://schemas.dmtf.org/ovf/envelope/1"`,
		`xmlns:vmw="http://www.vmware.com/schema/ovf"`,
		`ovf:capacityAllocationUnits="byte"`,
		`ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"`,
		`<OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest">`,
		`<vssd:VirtualSystemType>vmx-07</vssd:VirtualSystemType>`,
		`<rasd:VirtualQuantity>3073</rasd:VirtualQuantity>`,
		`<vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"></vmw:Config>`,
		`<Network ovf:name="lan">`,
	} {
		if !bytes.Contains(out, []byte(s)) {
			t.Errorf("descriptor lacks %s:\n%s", s, out)
		}
	}
	checkRASDOrder(t, out)
}

// checkRASDOrder checks that every Item's elements follow the CIM
// schema's sequence, which is alphabetical: ovftool validates it.
func checkRASDOrder(t *testing.T, descriptor []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(descriptor))
	var names []string
	inItem, depth, items := false, 0, 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			switch {
			case inItem:
				if depth++; depth == 1 {
					names = append(names, tok.Name.Local)
				}
			case tok.Name.Local == "Item":
				inItem, depth, names = true, 0, nil
				items++
			}
		case xml.EndElement:
			switch {
			case !inItem:
			case depth > 0:
				depth--
			default: // the Item's own end
				if len(names) < 3 || !slices.IsSorted(names) {
					t.Errorf("item elements %v are not in the schema's order", names)
				}
				inItem = false
			}
		}
	}
	if items != 6 {
		t.Errorf("%d items; want cpu, memory, controller, disk, 2 NICs", items)
	}
}

func TestWriteBIOSAndDefaults(t *testing.T) {
	spec := exportSpec()
	spec.Firmware, spec.OSType, spec.NICs = "", "", nil
	out, err := Write(spec)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("firmware")) || bytes.Contains(out, []byte("NetworkSection")) {
		t.Errorf("firmware not stated and no NIC: want no firmware key and no NetworkSection:\n%s", out)
	}
	if !bytes.Contains(out, []byte(`<OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest">`)) {
		t.Errorf("want the default otherLinux64Guest, CIM 101:\n%s", out)
	}
}

func TestWriteRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*ExportSpec)
		want string
	}{
		{"no cpu", func(s *ExportSpec) { s.CPUs = 0 }, "cpus 0"},
		{"no memory", func(s *ExportSpec) { s.Memory = 0 }, "memory 0 bytes"},
		{"path href", func(s *ExportSpec) { s.Disk.Href = "../disk.vmdk" }, `"../disk.vmdk" is not a plain file name`},
		{"bad MAC", func(s *ExportSpec) { s.NICs[0].MAC = "zz" }, "NIC 1"},
		{"firmware", func(s *ExportSpec) { s.Firmware = "coreboot" }, `firmware "coreboot"`},
		{"no name", func(s *ExportSpec) { s.Name = " " }, "name is empty"},
	} {
		spec := exportSpec()
		tc.edit(&spec)
		_, err := Write(spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%s: error %v; want one containing %q", tc.name, err, tc.want)
		}
	}
}
