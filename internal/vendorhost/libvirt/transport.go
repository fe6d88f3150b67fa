package libvirt

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/polyvisor/polyvisor/internal/vendorhost"
)

// libvirt's TLS files, where its client looks for them when the URI has
// no pkipath=: the system's for root (polyvisor's daemon runs as root).
const (
	pkiCA   = "/etc/pki/CA/cacert.pem"
	pkiCert = "/etc/pki/libvirt/clientcert.pem"
	pkiKey  = "/etc/pki/libvirt/private/clientkey.pem"
)

// dialTLS connects to libvirtd's TLS port with the client certificate
// libvirt's own client would use. The server is verified by the CA file,
// or, when the user accepted one, by its certificate's SHA-256
// fingerprint.
func dialTLS(ctx context.Context, t target, fingerprint string) (net.Conn, error) {
	ca, cert, key := pkiCA, pkiCert, pkiKey
	if dir := t.query.Get("pkipath"); dir != "" {
		ca, cert, key = filepath.Join(dir, "cacert.pem"), filepath.Join(dir, "clientcert.pem"), filepath.Join(dir, "clientkey.pem")
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("%w: TLS client certificate: %w; libvirt's TLS needs one (see libvirt's TLS setup, or give pkipath=DIR)", vendorhost.ErrAuth, err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{pair}, ServerName: t.host, MinVersion: tls.VersionTLS12}
	want := strings.ToLower(strings.ReplaceAll(fingerprint, ":", ""))
	switch {
	case want != "":
		// The fingerprint the user accepted replaces the CA check.
		conf.InsecureSkipVerify = true
		conf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the server sent no certificate")
			}
			sum := sha256.Sum256(raw[0])
			if got := hex.EncodeToString(sum[:]); got != want {
				return fmt.Errorf("%w: server certificate SHA-256 %s is not the accepted %s", vendorhost.ErrAuth, got, want)
			}
			return nil
		}
	case t.query.Get("no_verify") == "1":
		conf.InsecureSkipVerify = true
	default:
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("%w: TLS CA certificate: %w; give pkipath=DIR or the server's fingerprint", vendorhost.ErrAuth, err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s holds no PEM certificate", vendorhost.ErrInvalid, ca)
		}
	}
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: conf}
	conn, err := d.DialContext(ctx, "tcp", t.display)
	if err != nil {
		return nil, err
	}
	// libvirtd answers a TLS client with one byte: 1 when it accepted the
	// client's certificate.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	b := make([]byte, 1)
	if _, err := conn.Read(b); err != nil || b[0] != 1 {
		conn.Close()
		return nil, fmt.Errorf("%w: libvirtd refused this client's certificate (%v)", vendorhost.ErrAuth, err)
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// sshConn is a channel to the remote libvirt socket that closes its SSH
// client with it.
type sshConn struct {
	net.Conn
	client *ssh.Client
}

func (c sshConn) Close() error {
	err := c.Conn.Close()
	return errors.Join(err, c.client.Close())
}

// dialSSH connects as OpenSSH would for root: the host key must be in
// ~/.ssh/known_hosts (an unknown host is refused, never added), and the
// user authenticates by the SSH agent, the default key files, or the
// host's stored password. The remote libvirt socket is then reached
// through the SSH server's unix-socket forwarding, which libvirt's own
// "virt-ssh-helper" is not needed for.
func dialSSH(ctx context.Context, t target, password string) (net.Conn, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("%w: ssh: no home directory for known_hosts and keys: %w", vendorhost.ErrInvalid, err)
	}
	knownFile := filepath.Join(home, ".ssh", "known_hosts")
	if f := t.query.Get("known_hosts"); f != "" {
		knownFile = f
	}
	check, err := knownhosts.New(knownFile)
	if err != nil {
		return nil, fmt.Errorf("%w: ssh: %w; add the host's key first (ssh-keyscan -H %s >> %s, after checking it)", vendorhost.ErrAuth, err, t.host, knownFile)
	}
	var methods []ssh.AuthMethod
	var signers []ssh.Signer
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if ac, err := (&net.Dialer{}).DialContext(ctx, "unix", sock); err == nil {
			defer ac.Close()
			if s, err := agent.NewClient(ac).Signers(); err == nil {
				signers = append(signers, s...)
			}
		}
	}
	keyFiles := []string{"id_ed25519", "id_ecdsa", "id_rsa"}
	if f := t.query.Get("keyfile"); f != "" {
		keyFiles = []string{f}
	}
	for _, name := range keyFiles {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(home, ".ssh", name)
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: ssh key %s: %w", vendorhost.ErrAuth, path, err)
		}
		s, err := ssh.ParsePrivateKey(data)
		if err != nil {
			return nil, fmt.Errorf("%w: ssh key %s: %w (a key with a passphrase must be in the ssh agent)", vendorhost.ErrAuth, path, err)
		}
		signers = append(signers, s)
	}
	if len(signers) > 0 {
		methods = append(methods, ssh.PublicKeys(signers...))
	}
	if password != "" {
		methods = append(methods, ssh.Password(password))
	}
	if len(methods) == 0 {
		return nil, fmt.Errorf("%w: ssh: no key in the agent or ~/.ssh and no password: give the host a key", vendorhost.ErrAuth)
	}
	user := t.user
	if user == "" {
		user = "root"
	}
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(t.host, t.port))
	if err != nil {
		return nil, err
	}
	// The handshake has no context of its own: the deadline bounds it.
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	conf := &ssh.ClientConfig{User: user, Auth: methods, HostKeyCallback: check}
	cc, chans, reqs, err := ssh.NewClientConn(raw, net.JoinHostPort(t.host, t.port), conf)
	if err != nil {
		raw.Close()
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) {
			if len(ke.Want) == 0 {
				return nil, fmt.Errorf("%w: ssh: %s is not in %s: add its key first (after checking it)", vendorhost.ErrAuth, t.host, knownFile)
			}
			return nil, fmt.Errorf("%w: ssh: %s's host key does not match %s: it changed, or this is not that host", vendorhost.ErrAuth, t.host, knownFile)
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("%w: ssh as %s: %w", vendorhost.ErrAuth, user, err)
		}
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	client := ssh.NewClient(cc, chans, reqs)
	conn, err := client.Dial("unix", t.socket)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("libvirt socket %s on %s through ssh: %w", t.socket, t.host, err)
	}
	return sshConn{Conn: conn, client: client}, nil
}
