package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// shell runs the commands an exec may ask for, in process, as the TypeScript mock does:
// echo, cat, head -c N, env, printenv, hostname, true, false, sleep N, stty size, tty-size and
// sh -c with one of these (or `exit N`). Anything else prints "command not found" and exits 127.
type shell struct {
	stdin          io.Reader
	stdout, stderr func([]byte) error
	env            []string
	hostname       string
	sizes          <-chan [2]uint64
	ctx            context.Context
}

func (s *shell) print(text string) { _ = s.stdout([]byte(text)) }

func (s *shell) run(argv []string) int {
	if len(argv) == 0 {
		return 0
	}
	name, args := argv[0], argv[1:]
	switch name {
	case "echo":
		s.print(strings.Join(args, " ") + "\n")
	case "true":
	case "false":
		return 1
	case "hostname":
		s.print(s.hostname + "\n")
	case "env":
		for _, e := range s.env {
			s.print(e + "\n")
		}
	case "printenv":
		found := len(args) == 0
		for _, want := range args {
			for _, e := range s.env {
				if k, v, _ := strings.Cut(e, "="); k == want {
					s.print(v + "\n")
					found = true
				}
			}
		}
		if len(args) == 0 {
			for _, e := range s.env {
				s.print(e + "\n")
			}
		}
		if !found {
			return 1
		}
	case "cat":
		// Whatever stdin holds, up to this, goes back as one message.
		buf := make([]byte, 256*1024)
		for {
			n, err := s.stdin.Read(buf)
			if n > 0 {
				if s.stdout(buf[:n]) != nil {
					return 1
				}
			}
			if err != nil {
				break
			}
		}
	case "head":
		if len(args) != 2 || args[0] != "-c" {
			_ = s.stderr([]byte("mock: head: only head -c N is supported\n"))
			return 1
		}
		n, err := strconv.ParseInt(args[1], 10, 64)
		if err != nil || n < 0 {
			_ = s.stderr([]byte("mock: head: invalid number of bytes\n"))
			return 1
		}
		buf := make([]byte, 64*1024)
		for n > 0 {
			k, err := s.stdin.Read(buf[:min(int64(len(buf)), n)])
			if k > 0 {
				_ = s.stdout(buf[:k])
				n -= int64(k)
			}
			if err != nil {
				break
			}
		}
	case "sleep":
		secs, err := strconv.ParseFloat(strings.Join(args, ""), 64)
		if err != nil {
			_ = s.stderr([]byte("mock: sleep: invalid time interval\n"))
			return 1
		}
		select {
		case <-time.After(time.Duration(secs * float64(time.Second))):
		case <-s.ctx.Done():
			return 137
		}
	case "stty", "tty-size":
		if name == "stty" && (len(args) != 1 || args[0] != "size") {
			_ = s.stderr([]byte("mock: stty: only \"stty size\" is supported\n"))
			return 1
		}
		select {
		case size := <-s.sizes:
			// The latest size the client sent.
			for more := true; more; {
				select {
				case size = <-s.sizes:
				default:
					more = false
				}
			}
			s.print(fmt.Sprintf("%d %d\n", size[1], size[0]))
		case <-time.After(2 * time.Second):
			_ = s.stderr([]byte("mock: " + name + ": not a terminal\n"))
			return 1
		}
	case "sh":
		if len(args) != 2 || args[0] != "-c" {
			_ = s.stderr([]byte("mock: sh: only sh -c SCRIPT is supported\n"))
			return 2
		}
		code := 0
		for _, part := range strings.Split(args[1], ";") {
			words := strings.Fields(part)
			if len(words) == 0 {
				continue
			}
			if words[0] == "exit" {
				if len(words) > 1 {
					n, err := strconv.Atoi(words[1])
					if err != nil {
						return 2
					}
					return n & 0xff
				}
				return code
			}
			code = s.run(words)
		}
		return code
	default:
		_ = s.stderr([]byte("mock: " + name + ": command not found\n"))
		return 127
	}
	return 0
}
