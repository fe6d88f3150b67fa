package benchreport

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/polyvisor/polyvisor/pkg/api"
)

// File is report.json: the report as measured, with the ratios and the
// claims derived from it for scripts and for report.html. ReadJSON keeps
// only the Report and derives the rest again.
type File struct {
	*Report
	Legend string  `json:"ratioLegend"`
	Ratios []Row   `json:"ratios"`
	Claims []Claim `json:"claims"`
}

// NewFile derives report.json's contents from r.
func NewFile(r *Report) File {
	return File{Report: r, Legend: RatioLegend, Ratios: Rows(r), Claims: Claims(r)}
}

// WriteJSON writes report.json, indented.
func WriteJSON(w io.Writer, r *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(NewFile(r))
}

// ReadJSON reads a report.json that WriteJSON wrote, of this schema
// version or an older one it still reads (OldestVersion), refusing others.
func ReadJSON(rd io.Reader) (*Report, error) {
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var head struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%w: report is not JSON: %w", api.ErrInvalid, err)
	}
	switch {
	case head.Version == nil:
		return nil, fmt.Errorf("%w: not a polyvisor bench report: it has no version", api.ErrInvalid)
	case *head.Version < OldestVersion || *head.Version > Version:
		return nil, fmt.Errorf("%w: report schema version %d, this polyvisor reads versions %d to %d: run polyvisor bench again",
			api.ErrInvalid, *head.Version, OldestVersion, Version)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: report: %w", api.ErrInvalid, err)
	}
	return &r, nil
}
