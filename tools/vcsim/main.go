// Command vcsim serves govmomi's vCenter simulator on loopback over TLS,
// for `make demo` and the vendor host tests: a vSphere API to add as a
// host. With --disk, every simulated VM's disk holds that image instead of
// the simulator's empty one, so that a VM exported or moved from it boots.
//
// It prints one JSON line, {"url": ..., "fingerprint": ...}, then serves
// until SIGTERM or SIGINT.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve the vSphere API on")
	user := flag.String("user", "admin", "the only user that may log in")
	password := flag.String("password", "", "that user's password (required)")
	disk := flag.String("disk", "", "a VMDK image to give every VM as its disk")
	vms := flag.Int("vms", 2, "VMs on the simulated ESXi host")
	flag.Parse()
	if err := run(*listen, *user, *password, *disk, *vms); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
}

func run(listen, user, password, disk string, vms int) error {
	if password == "" {
		return fmt.Errorf("--password: give the password the user logs in with")
	}
	model := simulator.ESX()
	model.Machine = vms
	defer model.Remove()
	if err := model.Create(); err != nil {
		return fmt.Errorf("create the inventory: %w", err)
	}
	if disk != "" {
		if err := replaceDisks(model, disk); err != nil {
			return err
		}
	}
	model.Service.Listen = &url.URL{Host: listen, User: url.UserPassword(user, password)}
	model.Service.TLS = new(tls.Config)
	server := model.Service.NewServer()
	defer server.Close()
	sum := sha256.Sum256(server.Certificate().Raw)
	u := *server.URL
	u.Scheme, u.User, u.Path = "vsphere", url.User(user), ""
	if err := json.NewEncoder(os.Stdout).Encode(map[string]string{"url": u.String(), "fingerprint": hex.EncodeToString(sum[:])}); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	<-ctx.Done()
	return nil
}

// replaceDisks copies image over every VM disk the simulator made: a
// descriptor and an empty flat extent, which no importer takes.
func replaceDisks(model *simulator.Model, image string) error {
	for _, ds := range model.Map().All("Datastore") {
		root := ds.(*simulator.Datastore).Info.GetDatastoreInfo().Url
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".vmdk") {
				return err
			}
			if strings.HasSuffix(path, "-flat.vmdk") {
				return os.Remove(path)
			}
			return copyFile(image, path)
		})
		if err != nil {
			return fmt.Errorf("datastore %s: %w", ds.Entity().Name, err)
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
