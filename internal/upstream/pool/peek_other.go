//go:build !linux

package pool

// peeker is empty where the non-blocking peek is not implemented; idle
// connections are then trusted until a write or read fails.
type peeker struct{}

func (c *Conn) initPeek() {}

func (c *Conn) alive() bool { return true }
