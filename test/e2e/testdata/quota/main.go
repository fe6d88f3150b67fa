// Command quota, run inside a guest, takes or probes a kernel quota the
// host counts per host uid: the pipe buffer pages of one user
// (fs.pipe-user-pages-soft). Past that soft limit an unprivileged user's
// new pipes get two pages instead of sixteen and cannot grow: a guest
// that takes the whole quota starves every guest whose root is the same
// host uid.
//
//	quota hog   grows pipes to 1 MiB until the kernel refuses, adds
//	            default pipes until a new one gets the minimum, prints
//	            "held N pipes", and holds them for five minutes at most
//	quota probe makes one pipe and prints "size BYTES grow ok|denied"
package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: quota hog|probe")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "hog":
		hog()
	case "probe":
		probe()
	default:
		fmt.Fprintln(os.Stderr, "usage: quota hog|probe")
		os.Exit(2)
	}
}

func hog() {
	held := 0
	for ; held < 4096; held++ {
		p := newPipe()
		if _, err := unix.FcntlInt(uintptr(p), unix.F_SETPIPE_SZ, 1<<20); err != nil {
			break // EPERM: growing would pass the soft limit
		}
	}
	// Top up with default pipes until the kernel gives a new one the
	// minimum: the user is then past its soft limit, whatever other
	// processes of the same host uid hold.
	for range 64 {
		held++
		size, err := unix.FcntlInt(uintptr(newPipe()), unix.F_GETPIPE_SZ, 0)
		if err != nil {
			fmt.Printf("F_GETPIPE_SZ: %v\n", err)
			os.Exit(1)
		}
		if size <= 2*os.Getpagesize() {
			break
		}
	}
	fmt.Printf("held %d pipes\n", held)
	time.Sleep(5 * time.Minute)
}

// newPipe makes a pipe and returns its write end, or exits.
func newPipe() int {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		fmt.Printf("pipe: %v\n", err)
		os.Exit(1)
	}
	return p[1]
}

func probe() {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		fmt.Printf("pipe: %v\n", err)
		os.Exit(1)
	}
	size, err := unix.FcntlInt(uintptr(p[1]), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		fmt.Printf("F_GETPIPE_SZ: %v\n", err)
		os.Exit(1)
	}
	grow := "ok"
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, 1<<20); err != nil {
		grow = "denied"
	}
	fmt.Printf("size %d grow %s\n", size, grow)
}
