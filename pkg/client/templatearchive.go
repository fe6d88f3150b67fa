package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// TemplateArchive opens the named template's archive on the daemon: a
// zstd-compressed tar of its directory, and the stream's SHA-256 as the
// daemon announced it, for the receiver to check what it reads against
// (template.Store.Receive does). The caller closes body.
func (c *Client) TemplateArchive(ctx context.Context, name string) (body io.ReadCloser, digest string, err error) {
	resp, err := c.request(ctx, http.MethodGet, api.Version+"/templates/"+url.PathEscape(name)+"/archive", nil)
	if err != nil {
		return nil, "", err
	}
	digest = resp.Header.Get(api.DigestHeader)
	if digest == "" {
		resp.Body.Close()
		return nil, "", fmt.Errorf("template %s: the daemon at %s sent its archive without a digest (%s): upgrade it", name, c.where, api.DigestHeader)
	}
	return resp.Body, digest, nil
}
