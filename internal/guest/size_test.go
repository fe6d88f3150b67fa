package guest

import "testing"

func TestParseSize(t *testing.T) {
	good := map[string]Size{
		"512MiB": 512 << 20, "2GiB": 2 << 30, "1G": 1 << 30, "64M": 64 << 20,
		"1GB": 1e9, "4096": 4096, "1.5GiB": 3 << 29, " 8KiB ": 8 << 10,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "lots", "-1G", "1XB", "MiB", "1e400"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
}

func TestSizeStringRoundTrips(t *testing.T) {
	for _, s := range []Size{64 << 20, 2 << 30, 1536, 3 << 29} {
		back, err := ParseSize(s.String())
		if err != nil || back != s {
			t.Errorf("%d -> %q -> %d, %v", s, s.String(), back, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, seed := range []string{"512MiB", "1G", "1.5GiB", "x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSize(in)
		if err == nil && s < 0 {
			t.Fatalf("ParseSize(%q) = %d", in, s)
		}
	})
}
