package e2e

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	pvlayout "github.com/polyvisor/polyvisor/internal/layout"
	"github.com/polyvisor/polyvisor/pkg/api"
)

// imageOf assembles a one-layer image from a root tree tarball, with the
// command and environment of an application container.
func imageOf(t *testing.T, rootfsTar string) v1.Image {
	t.Helper()
	layer, err := tarball.LayerFromFile(rootfsTar)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint = []string{"/bin/sh", "-c"}
	cfg.Config.Cmd = []string{`echo "$GREETING" > /tmp/greeting; pwd > /tmp/cwd; exec sleep 3600`}
	cfg.Config.Env = []string{"PATH=/bin:/sbin:/usr/bin", "GREETING=hello-oci"}
	cfg.Config.WorkingDir = "/etc"
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImportAndExportContainers(t *testing.T) {
	requireRoot(t)
	d := env.main
	dir := t.TempDir()

	// A busybox guest with a file added and one of the template's removed:
	// the export must show the guest's view, whiteouts applied.
	launch(t, d, "busybox", "e2e-ctr-src")
	d.Must(t, "exec", "e2e-ctr-src", "--", "sh", "-c", "echo "+knownText+" > /root/known.txt && rm /etc/hostname.default 2>/dev/null; rm -f /bin/vi")
	d.Must(t, "stop", "e2e-ctr-src")
	rootfsTar := filepath.Join(dir, "rootfs.tar")
	d.Must(t, "export", "e2e-ctr-src", rootfsTar, "--format", "tar")
	mustFail(t, d, "format", "export", "e2e-ctr-src", filepath.Join(dir, "x.ova"), "--format", "ova")
	if _, err := os.Lstat(filepath.Join(pvlayout.New(d.StateDir).TemplatesDir(), "busybox", "rootfs", "bin", "vi")); err != nil {
		t.Fatalf("the busybox template has no /bin/vi to delete: %v", err)
	}
	var owners []int
	members := map[string]bool{}
	readTar(t, rootfsTar, func(hdr *tar.Header, _ []byte) {
		members[hdr.Name] = true
		owners = append(owners, hdr.Uid)
	})
	if members["bin/vi"] || !members["bin/sh"] || !members["root/known.txt"] {
		t.Errorf("exported tree: bin/vi %v (deleted by the guest), bin/sh %v, root/known.txt %v", members["bin/vi"], members["bin/sh"], members["root/known.txt"])
	}
	for _, uid := range owners {
		if uid >= 65536 {
			t.Fatalf("exported tree has owner %d: host ids leaked instead of the guest's", uid)
		}
	}

	t.Run("rootfs-tarball-round-trips", func(t *testing.T) {
		d.Must(t, "import", rootfsTar, "e2e-ctr-back", "--start")
		t.Cleanup(func() { d.Run("delete", "--force", "e2e-ctr-back"); d.Run("template", "delete", "e2e-ctr-back") })
		if got := strings.TrimSpace(d.Must(t, "exec", "e2e-ctr-back", "--", "cat", "/root/known.txt")); got != knownText {
			t.Errorf("known file reads %q", got)
		}
		if _, _, code := d.Run("exec", "e2e-ctr-back", "--", "test", "-e", "/bin/vi"); code == 0 {
			t.Error("/bin/vi came back")
		}
	})

	img := imageOf(t, rootfsTar)
	t.Run("oci-layout-entrypoint-runs", func(t *testing.T) {
		ociDir := filepath.Join(dir, "oci")
		p, err := layout.Write(ociDir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.AppendImage(img); err != nil {
			t.Fatal(err)
		}
		d.Must(t, "import", ociDir, "e2e-oci", "--start")
		t.Cleanup(func() { d.Run("delete", "--force", "e2e-oci"); d.Run("template", "delete", "e2e-oci") })
		if g := info(t, d, "e2e-oci"); g.State != api.StateRunning || g.Type != "container" {
			t.Errorf("OCI guest: %+v", g)
		}
		var greeting, cwd string
		for range 50 { // the entrypoint runs as the guest starts
			greeting = strings.TrimSpace(d.Must(t, "exec", "e2e-oci", "--", "cat", "/tmp/greeting"))
			cwd = strings.TrimSpace(d.Must(t, "exec", "e2e-oci", "--", "cat", "/tmp/cwd"))
			if greeting != "" {
				break
			}
		}
		if greeting != "hello-oci" || cwd != "/etc" {
			t.Errorf("entrypoint wrote greeting %q and cwd %q, want hello-oci and /etc", greeting, cwd)
		}
	})

	t.Run("docker-save-tarball", func(t *testing.T) {
		saved := filepath.Join(dir, "saved.tar")
		tag, err := name.NewTag("e2e/busybox:1")
		if err != nil {
			t.Fatal(err)
		}
		if err := tarball.WriteToFile(saved, tag, img); err != nil {
			t.Fatal(err)
		}
		d.Must(t, "import", saved, "e2e-docker", "--as", "template")
		t.Cleanup(func() { d.Run("template", "delete", "e2e-docker") })
		var tm api.Template
		jsonUnmarshal(d.Must(t, "template", "show", "e2e-docker", "--format", "json"), &tm)
		cfg, _ := img.ConfigFile()
		want := append(cfg.Config.Entrypoint, cfg.Config.Cmd...)
		if tm.Process == nil || !slices.Equal(tm.Process.Args, want) || tm.Process.Cwd != "/etc" || !slices.Contains(tm.Process.Env, "GREETING=hello-oci") {
			t.Errorf("template of a docker save tarball: %+v", tm.Process)
		}
	})

	t.Run("a-crafted-tarball-writes-nothing-outside", func(t *testing.T) {
		outside := filepath.Join(dir, "outside")
		if err := os.Mkdir(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, entries := range map[string][]tar.Header{
			"dotdot": {{Name: "../../../../../../" + outside[1:] + "/dotdot", Typeflag: tar.TypeReg, Mode: 0o644}},
			"symlink": {
				{Name: "escape", Typeflag: tar.TypeSymlink, Linkname: "../../../../../../../../" + outside[1:]},
				{Name: "escape/planted", Typeflag: tar.TypeReg, Mode: 0o644},
			},
		} {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
			for _, hdr := range entries {
				tw.WriteHeader(&hdr)
			}
			tw.Close()
			crafted := filepath.Join(dir, name+".tar")
			if err := os.WriteFile(crafted, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			mustFail(t, d, map[string]string{"dotdot": "dotdot", "symlink": "escape"}[name], "import", crafted, "e2e-crafted")
			if list, _ := os.ReadDir(outside); len(list) > 0 {
				t.Errorf("%s: the import wrote %v outside the state dir", name, list)
			}
			if _, _, code := d.Run("template", "show", "e2e-crafted"); code == 0 {
				t.Errorf("%s: a template was left", name)
				d.Run("template", "delete", "e2e-crafted")
			}
			if left := leftovers(t, d); len(left) > 0 {
				t.Errorf("%s: the refused import left %v", name, left)
			}
		}
	})
}
