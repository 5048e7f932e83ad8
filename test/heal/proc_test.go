package heal

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/healgate/healgate/internal/testproc"
)

// childPID returns the pid (host view) of p's only child, for nsenter,
// which forks the command it runs into the new PID namespace.
func childPID(p *testproc.Proc) (int, error) {
	pid := p.Pid()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 1 {
		return 0, fmt.Errorf("%s (pid %d) has children %q, want one", p.Name(), pid, f)
	}
	return strconv.Atoi(f[0])
}

// accepts reports whether addr accepts a TCP connection now.
func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
