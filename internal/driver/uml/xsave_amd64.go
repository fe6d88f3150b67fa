package uml

// cpuid executes CPUID with EAX=leaf and ECX=sub.
func cpuid(leaf, sub uint32) (a, b, c, d uint32)

// xsaveSize is the size in bytes of the XSAVE area for the state
// components the host kernel has enabled (CPUID leaf 0xD, EBX), and 0 when
// the CPU has no such leaf. UML builds that predate a CPU's XSAVE layout
// fail to restore their processes' FPU state ("ptrace set fp regs failed,
// errno = 14"): the size is what a report of that failure needs.
func xsaveSize() int {
	if maxLeaf, _, _, _ := cpuid(0, 0); maxLeaf < 0xd {
		return 0
	}
	_, size, _, _ := cpuid(0xd, 0)
	return int(size)
}
