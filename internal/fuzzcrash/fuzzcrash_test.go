package fuzzcrash

import "testing"

func TestIsWorker(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"stream.test", "-test.fuzzworker", "-test.run=^$"}, true},
		{[]string{"stream.test", "-test.fuzzworker=true"}, true},
		{[]string{"stream.test", "-test.fuzz=^FuzzH2Conn$"}, false},
		{[]string{"stream.test"}, false},
	} {
		if got := isWorker(c.args); got != c.want {
			t.Errorf("isWorker(%q) = %v", c.args, got)
		}
	}
}
