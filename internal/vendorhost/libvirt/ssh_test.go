package libvirt

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/polyvisor/polyvisor/internal/hostreq"
	"github.com/polyvisor/polyvisor/internal/testgate"
	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// sshForwarder is an SSH server on loopback that accepts one client key
// and forwards "direct-streamlocal@openssh.com" channels (what OpenSSH's
// ssh -L to a unix socket opens, and AllowStreamLocalForwarding allows) to
// the unix socket they name: the part of an sshd a qemu+ssh URI uses.
type sshForwarder struct {
	l  net.Listener
	wg sync.WaitGroup
}

func startSSHForwarder(t *testing.T, hostKey ssh.Signer, client ssh.PublicKey) *sshForwarder {
	t.Helper()
	conf := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if string(key.Marshal()) == string(client.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	conf.AddHostKey(hostKey)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &sshForwarder{l: l}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				f.serve(c, conf)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		f.wg.Wait()
	})
	return f
}

func (f *sshForwarder) serve(c net.Conn, conf *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	defer sc.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "direct-streamlocal@openssh.com" {
			nc.Reject(ssh.UnknownChannelType, "only unix socket forwarding here")
			continue
		}
		var req struct {
			Path      string
			Reserved0 string
			Reserved1 uint32
		}
		if err := ssh.Unmarshal(nc.ExtraData(), &req); err != nil {
			nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		u, err := net.Dial("unix", req.Path)
		if err != nil {
			nc.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			u.Close()
			continue
		}
		go ssh.DiscardRequests(creqs)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			done := make(chan struct{}, 2)
			go func() { io.Copy(u, ch); u.(*net.UnixConn).CloseWrite(); done <- struct{}{} }()
			go func() { io.Copy(ch, u); ch.CloseWrite(); done <- struct{}{} }()
			<-done
			<-done
			ch.Close()
			u.Close()
		}()
	}
}

// TestLibvirtHostSSH opens a private libvirtd through qemu+ssh: Go's SSH
// client, a known_hosts file and a key file, the remote socket reached by
// unix-socket forwarding. An unknown host key and an unknown client key
// are refused with ErrAuth, in one line.
func TestLibvirtHostSSH(t *testing.T) {
	testgate.RequireRoot(t, "needs root: libvirtd runs in namespaces of its own")
	for _, tool := range []string{"libvirtd", "unshare", "mount", "mkdir", "sh", "cp", "qemu-system-x86_64", "qemu-img"} {
		hostreq.Need(t, tool)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	d := startTestDaemon(t, ctx)
	dir := t.TempDir()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientKey, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startSSHForwarder(t, hostKey, clientKey)
	addr := srv.l.Addr().String()
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey.PublicKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := func(knownFile, key string) *url.URL {
		q := url.Values{"socket": {d.socket()}, "known_hosts": {knownFile}, "keyfile": {key}}
		return &url.URL{Scheme: "qemu+ssh", User: url.User("root"), Host: addr, Path: "/system", RawQuery: q.Encode()}
	}
	// SSH_AUTH_SOCK would add the agent's keys to the test's.
	t.Setenv("SSH_AUTH_SOCK", "")

	h, err := Open(ctx, vendorhost.Credentials{URL: uri(known, keyFile)})
	if err != nil {
		t.Fatalf("open over ssh: %v", err)
	}
	define(t, ctx, h.(*Host), qemuDomainXML(testPrefix+"-ssh", filepath.Join(dir, "none.qcow2")))
	guests, err := h.List(ctx)
	if err != nil || len(guests) != 1 || guests[0].Name != testPrefix+"-ssh" {
		t.Errorf("list over ssh: %+v, %v", guests, err)
	}
	if err := h.Delete(ctx, testPrefix+"-ssh"); err != nil {
		t.Errorf("delete over ssh: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Errorf("close: %v", err)
	}

	empty := filepath.Join(dir, "known_hosts_empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherBlock, _ := ssh.MarshalPrivateKey(other, "")
	otherKey := filepath.Join(dir, "other_key")
	if err := os.WriteFile(otherKey, pem.EncodeToMemory(otherBlock), 0o600); err != nil {
		t.Fatal(err)
	}
	for what, u := range map[string]*url.URL{
		"unknown host key":   uri(empty, keyFile),
		"unknown client key": uri(known, otherKey),
	} {
		h, err := Open(ctx, vendorhost.Credentials{URL: u})
		if err == nil {
			h.Close()
			t.Errorf("%s: opened", what)
			continue
		}
		t.Logf("%s: %v", what, err)
		if !errors.Is(err, vendorhost.ErrAuth) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line and ErrAuth", what, err)
		}
	}
}
