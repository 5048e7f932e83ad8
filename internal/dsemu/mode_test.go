package dsemu

import (
	"errors"
	"testing"
	"time"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in   string
		want Mode
	}{
		{"ok", Mode{Kind: KindOK}},
		{" false\n", Mode{Kind: KindFalse}},
		{"hang", Mode{Kind: KindHang}},
		{"slow", Mode{Kind: KindSlow, Delay: DefaultSlowDelay}},
		{"slow=90ms", Mode{Kind: KindSlow, Delay: 90 * time.Millisecond}},
		{"reset", Mode{Kind: KindReset}},
		{"reset-before", Mode{Kind: KindResetBefore}},
		{"5xx", Mode{Kind: Kind5xx, Status: 502}},
		{"5xx=504", Mode{Kind: Kind5xx, Status: 504}},
		{"crash-after=2s", Mode{Kind: KindCrashAfter, Delay: 2 * time.Second}},
	}
	for _, tt := range tests {
		got, err := ParseMode(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseMode(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		again, err := ParseMode(got.String())
		if err != nil || again != got {
			t.Errorf("ParseMode(%q.String() = %q) = %+v, %v; want a round trip", tt.in, got.String(), again, err)
		}
	}

	for _, in := range []string{"", "OK", "nope", "hang=1s", "slow=x", "slow=-1s", "5xx=200", "5xx=abc",
		"crash-after", "crash-after=soon", "wait-for=127.0.0.1:5672"} {
		if m, err := ParseMode(in); !errors.Is(err, ErrInvalidMode) {
			t.Errorf("ParseMode(%q) = %+v, %v; want ErrInvalidMode", in, m, err)
		}
	}
	if s := (Mode{}).String(); s != "ok" {
		t.Errorf("zero Mode = %q, want ok", s)
	}
}
