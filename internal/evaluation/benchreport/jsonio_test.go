package benchreport

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/polyvisor/polyvisor/pkg/api"
)

func TestJSONRoundTrip(t *testing.T) {
	busyReport := fullReport()
	busy(busyReport)
	for name, r := range map[string]*Report{"full": fullReport(), "broken": brokenReport(), "busy": busyReport, "version 1": oldReport()} {
		var b bytes.Buffer
		if err := WriteJSON(&b, r); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), fmt.Sprintf("\n  \"version\": %d,\n", r.Version)) {
			t.Errorf("%s: report.json is not indented with the version on top:\n%.200s", name, b.String())
		}
		got, err := ReadJSON(bytes.NewReader(b.Bytes()))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("%s: round trip changed the report:\n got %+v\nwant %+v", name, got, r)
		}

		// The derived parts are there for scripts, and agree with the report.
		var f struct {
			Ratios []Row   `json:"ratios"`
			Claims []Claim `json:"claims"`
			Legend string  `json:"ratioLegend"`
		}
		if err := json.Unmarshal(b.Bytes(), &f); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f.Ratios, Rows(r)) || !reflect.DeepEqual(f.Claims, Claims(r)) || f.Legend != RatioLegend {
			t.Errorf("%s: report.json's ratios or claims differ from the report's", name)
		}
	}
}

func TestReadJSONRefusesOtherVersions(t *testing.T) {
	r := fullReport()
	r.Version = Version + 1
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	_, err := ReadJSON(&b)
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "schema version 3, this polyvisor reads versions 1 to 2") || !strings.Contains(err.Error(), "run polyvisor bench again") {
		t.Errorf("newer schema: %v, want an invalid-report error naming the version", err)
	}
	for _, in := range []string{`{"classes": []}`, `[1, 2]`, `{"version": "1"}`, `{"version": 0}`, `not json`} {
		if _, err := ReadJSON(strings.NewReader(in)); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("ReadJSON(%s): %v, want an invalid-report error", in, err)
		}
	}
}
