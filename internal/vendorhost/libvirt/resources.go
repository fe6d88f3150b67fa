package libvirt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// SetResources changes a domain's vCPUs and memory in its persistent
// definition (CONFIG). A stopped domain's maximums become the new values,
// so they can grow past the old maximum; a running domain changes live too,
// within the maximums it was started with (vCPU hot-plug, the balloon),
// and a change past them is refused with the fix: stop it first.
func (h *Host) SetResources(ctx context.Context, name string, cpus int, memoryMiB int64) error {
	if cpus < 0 || memoryMiB < 0 {
		return fmt.Errorf("%w: resources of %s: cpus %d, memory %d MiB: give positive values, or 0 to leave one as is", vendorhost.ErrInvalid, name, cpus, memoryMiB)
	}
	d, err := h.lookup(ctx, name)
	if err != nil {
		return err
	}
	if cpus == 0 && memoryMiB == 0 {
		return nil
	}
	s, err := h.state(ctx, d)
	if err != nil {
		return err
	}
	running := s != golibvirt.DomainShutoff && s != golibvirt.DomainCrashed
	var conf libvirtxml.Domain
	err = h.c.call(ctx, "definition of "+name, callTimeout, func(l *golibvirt.Libvirt) error {
		xml, err := l.DomainGetXMLDesc(d, golibvirt.DomainXMLInactive)
		if err != nil {
			return err
		}
		return conf.Unmarshal(xml)
	})
	if err != nil {
		return err
	}
	if cpus > 0 {
		if err := h.setCPUs(ctx, d, &conf, uint32(cpus), running); err != nil {
			return err
		}
	}
	if memoryMiB > 0 {
		if err := h.setMemory(ctx, d, &conf, uint64(memoryMiB)<<10, running); err != nil {
			return err
		}
	}
	return nil
}

func (h *Host) setCPUs(ctx context.Context, d golibvirt.Domain, conf *libvirtxml.Domain, n uint32, running bool) error {
	what := fmt.Sprintf("set %s's vCPUs to %d", d.Name, n)
	var max uint32
	if conf.VCPU != nil {
		max = uint32(conf.VCPU.Value)
	}
	config := uint32(golibvirt.DomainVCPUConfig)
	maximum := uint32(golibvirt.DomainVCPUConfig | golibvirt.DomainVCPUMaximum)
	if running {
		if n > max {
			return fmt.Errorf("%w: %s: it runs with at most %d vCPUs: stop it first to raise the maximum", vendorhost.ErrConflict, what, max)
		}
		return h.c.call(ctx, what, callTimeout, func(l *golibvirt.Libvirt) error {
			err := l.DomainSetVcpusFlags(d, n, uint32(golibvirt.DomainVCPULive)|config)
			return refuseLive(err, "stop it first to change its vCPUs")
		})
	}
	return h.c.call(ctx, what, callTimeout, func(l *golibvirt.Libvirt) error {
		return setBounded(n > max, config, maximum, func(flags uint32) error { return l.DomainSetVcpusFlags(d, n, flags) })
	})
}

// setBounded sets a value in a stopped domain's definition and its
// maximum: the maximum first when growing, last when shrinking, as the
// value may never exceed it.
func setBounded(grow bool, config, maximum uint32, set func(flags uint32) error) error {
	order := []uint32{config, maximum}
	if grow {
		order = []uint32{maximum, config}
	}
	for _, flags := range order {
		if err := set(flags); err != nil {
			return err
		}
	}
	return nil
}

func (h *Host) setMemory(ctx context.Context, d golibvirt.Domain, conf *libvirtxml.Domain, kib uint64, running bool) error {
	what := fmt.Sprintf("set %s's memory to %d MiB", d.Name, kib>>10)
	var max uint64
	if conf.Memory != nil {
		max = bytesOf(conf.Memory.Value, conf.Memory.Unit) >> 10
	}
	config := uint32(golibvirt.DomainMemConfig)
	maximum := uint32(golibvirt.DomainMemConfig | golibvirt.DomainMemMaximum)
	if running {
		if kib > max {
			return fmt.Errorf("%w: %s: it runs with at most %d MiB: stop it first to raise the maximum", vendorhost.ErrConflict, what, max>>10)
		}
		return h.c.call(ctx, what, callTimeout, func(l *golibvirt.Libvirt) error {
			err := l.DomainSetMemoryFlags(d, kib, uint32(golibvirt.DomainMemLive)|config)
			return refuseLive(err, "stop it first to change its memory (a live change needs a balloon device)")
		})
	}
	return h.c.call(ctx, what, callTimeout, func(l *golibvirt.Libvirt) error {
		return setBounded(kib > max, config, maximum, func(flags uint32) error { return l.DomainSetMemoryFlags(d, kib, flags) })
	})
}

// refuseLive turns libvirt's refusal of a live change into a conflict
// that says what to do.
func refuseLive(err error, fix string) error {
	le, ok := libvirtError(err)
	if !ok {
		return err
	}
	switch golibvirt.ErrorNumber(le.Code) {
	case golibvirt.ErrOperationInvalid, golibvirt.ErrNoSupport, golibvirt.ErrOperationUnsupported, golibvirt.ErrArgumentUnsupported, golibvirt.ErrOperationFailed, golibvirt.ErrInternalError:
		return fmt.Errorf("%w: %s: %s", vendorhost.ErrConflict, le.Message, fix)
	}
	return err
}

// Delete undefines a stopped domain with its snapshot and checkpoint
// metadata and its UEFI variables, then deletes those of its disks that
// are volumes of a libvirt storage pool (what virt-install or
// virt-manager made for it). A disk that is a plain file outside every
// pool, a block device or a network disk is the host administrator's and
// is left where it is; so is an LXC domain's root tree.
func (h *Host) Delete(ctx context.Context, name string) error {
	d, err := h.lookup(ctx, name)
	if err != nil {
		return err
	}
	if err := h.requireStopped(ctx, d, "delete"); err != nil {
		return err
	}
	var conf libvirtxml.Domain
	err = h.c.call(ctx, "definition of "+name, callTimeout, func(l *golibvirt.Libvirt) error {
		xml, err := l.DomainGetXMLDesc(d, golibvirt.DomainXMLInactive)
		if err != nil {
			return err
		}
		return conf.Unmarshal(xml)
	})
	if err != nil {
		return err
	}
	// Pool volumes are found before the domain goes, while its disks
	// still say which they are.
	vols := h.poolVolumes(ctx, &conf)
	flags := golibvirt.DomainUndefineManagedSave | golibvirt.DomainUndefineSnapshotsMetadata | golibvirt.DomainUndefineCheckpointsMetadata
	if !h.isLXC() {
		flags |= golibvirt.DomainUndefineNvram
	}
	err = h.c.call(ctx, "delete "+name, callTimeout, func(l *golibvirt.Libvirt) error {
		err := l.DomainUndefineFlags(d, flags)
		if le, ok := libvirtError(err); ok && (golibvirt.ErrorNumber(le.Code) == golibvirt.ErrInvalidArg || golibvirt.ErrorNumber(le.Code) == golibvirt.ErrNoSupport) {
			// Drivers that take none of those flags (LXC, older Xen)
			// have no snapshots, checkpoints or NVRAM to remove.
			err = l.DomainUndefineFlags(d, 0)
		}
		return err
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vols {
		err := h.c.call(ctx, "delete "+name+"'s volume "+v.Pool+"/"+v.Name, slowCallTimeout, func(l *golibvirt.Libvirt) error {
			return l.StorageVolDelete(v, golibvirt.StorageVolDeleteNormal)
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s is deleted but not all its disks: %w", name, err)
	}
	return nil
}

// poolVolumes are the domain's disks that are storage pool volumes:
// <source pool= volume=>, or a file path that a pool knows. Lookup
// failures mean "not a volume", which keeps the disk.
func (h *Host) poolVolumes(ctx context.Context, conf *libvirtxml.Domain) []golibvirt.StorageVol {
	if conf.Devices == nil {
		return nil
	}
	var vols []golibvirt.StorageVol
	for _, disk := range conf.Devices.Disks {
		if disk.Device != "" && disk.Device != "disk" || disk.Source == nil {
			continue
		}
		var v golibvirt.StorageVol
		err := h.c.call(ctx, "volume of "+conf.Name, callTimeout, func(l *golibvirt.Libvirt) error {
			var err error
			switch src := disk.Source; {
			case src.Volume != nil:
				var p golibvirt.StoragePool
				if p, err = l.StoragePoolLookupByName(src.Volume.Pool); err == nil {
					v, err = l.StorageVolLookupByName(p, src.Volume.Volume)
				}
			case src.File != nil && strings.HasPrefix(src.File.File, "/"):
				v, err = l.StorageVolLookupByPath(src.File.File)
			default:
				err = vendorhost.ErrNotFound
			}
			return err
		})
		if err == nil {
			vols = append(vols, v)
		}
	}
	return vols
}
