// Command racy has a data race on purpose, then runs like a server until
// SIGTERM. test/cluster runs it as a race-built stand-in to check that a
// stand-in's race report fails the test that ran it. (Under testdata, so
// ./... patterns, and with them vet and the linters, leave it alone.)
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	n := 0
	done := make(chan bool)
	go func() { n++; done <- true }() // races with the increment below
	n++
	<-done
	fmt.Println("raced:", n)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
}
