package main

import (
	"io"
	"sync"
)

// pipe is an in-memory pipe with a buffer, as an operating system's pipe has: a writer does not
// wait for the reader unless `limit` bytes are waiting, and a reader gets everything waiting at
// once (up to the length of its slice). io.Pipe hands each write over only when a reader takes
// it, so the stream's receiving goroutine and the command would take turns instead of working
// at the same time.
type pipe struct {
	mu      sync.Mutex
	cond    sync.Cond
	buf     []byte
	limit   int
	eof     bool // the writer closed: readers get io.EOF once buf is empty
	readEnd bool // the reader closed: writes fail with io.ErrClosedPipe
}

func newPipe(limitBytes int) *pipe {
	p := &pipe{limit: limitBytes}
	p.cond.L = &p.mu
	return p
}

// Read waits for data or the end, then copies what is waiting into b.
func (p *pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.eof && !p.readEnd {
		p.cond.Wait()
	}
	if p.readEnd {
		return 0, io.ErrClosedPipe
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = p.buf[:0:0] // let the backing array go
	}
	p.cond.Broadcast()
	return n, nil
}

// Write appends b, waiting while the buffer holds `limit` bytes or more.
func (p *pipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) >= p.limit && !p.readEnd && !p.eof {
		p.cond.Wait()
	}
	if p.readEnd || p.eof {
		return 0, io.ErrClosedPipe
	}
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	return len(b), nil
}

// Close ends the writing side: readers get what is left, then io.EOF.
func (p *pipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eof = true
	p.cond.Broadcast()
	return nil
}

// CloseRead ends the reading side: a waiting or later Write fails, so the writer never blocks
// on a reader that has gone.
func (p *pipe) CloseRead() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.readEnd = true
	p.buf = nil
	p.cond.Broadcast()
}
