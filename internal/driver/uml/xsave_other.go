//go:build !amd64

package uml

// xsaveSize is 0 off amd64: UML's XSAVE note concerns x86 hosts only.
func xsaveSize() int { return 0 }
