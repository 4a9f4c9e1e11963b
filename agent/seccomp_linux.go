package agent

import (
	"encoding/binary"
	"runtime"

	"golang.org/x/sys/unix"
)

// The agent shares the operator's terminal. Two ioctls would let it act
// on the terminal beyond writing to it: TIOCSTI pushes bytes into the
// terminal's input (commands the operator's shell runs after tf exits)
// and TIOCLINUX reaches the Linux console. ttyFilter is a seccomp program
// (classic BPF, as bubblewrap's --seccomp takes) that refuses both with
// EPERM and allows everything else, for the native system calls and the
// 32-bit ones this architecture also runs; x32 calls are refused.
//
// A new session (setsid) would keep TIOCSTI away too, but it puts the
// agent in a scheduler autogroup of its own, which halves its share of
// the CPU under load (measured: -6% throughput of a client in the
// sandbox, -16 to -24% through tf).
func ttyFilter() ([]byte, bool) {
	var native, compat, nativeIoctl, compatIoctl, x32 uint32
	switch runtime.GOARCH {
	case "amd64":
		native, nativeIoctl = unix.AUDIT_ARCH_X86_64, 16
		compat, compatIoctl = unix.AUDIT_ARCH_I386, 54
		x32 = 0x40000000 // __X32_SYSCALL_BIT
	case "arm64":
		native, nativeIoctl = unix.AUDIT_ARCH_AARCH64, 29
		compat, compatIoctl = unix.AUDIT_ARCH_ARM, 54
		x32 = 0xffffffff // none: no call number reaches it
	default:
		return nil, false
	}
	const (
		ld    = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		nr    = 0  // offsetof(struct seccomp_data, nr)
		arch  = 4  // offsetof(struct seccomp_data, arch)
		arg1  = 24 // the low half of args[1] (little-endian)
		allow = 14
		deny  = 15
	)
	type insn struct {
		code   uint16
		jt, jf int // targets: absolute indexes, -1 for the next one
		k      uint32
	}
	prog := []insn{
		0:     {ld, -1, -1, arch},
		1:     {jeq, 2, 8, native},
		2:     {ld, -1, -1, nr},
		3:     {jge, deny, 4, x32},
		4:     {jeq, 5, allow, nativeIoctl},
		5:     {ld, -1, -1, arg1},
		6:     {jeq, deny, 7, unix.TIOCSTI},
		7:     {jeq, deny, allow, unix.TIOCLINUX},
		8:     {jeq, 9, allow, compat},
		9:     {ld, -1, -1, nr},
		10:    {jeq, 11, allow, compatIoctl},
		11:    {ld, -1, -1, arg1},
		12:    {jeq, deny, 13, unix.TIOCSTI},
		13:    {jeq, deny, allow, unix.TIOCLINUX},
		allow: {ret, -1, -1, unix.SECCOMP_RET_ALLOW},
		deny:  {ret, -1, -1, unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	}
	out := make([]byte, 0, 8*len(prog))
	for i, in := range prog {
		rel := func(t int) uint8 {
			if t < 0 {
				return 0
			}
			return uint8(t - i - 1)
		}
		out = binary.LittleEndian.AppendUint16(out, in.code)
		out = append(out, rel(in.jt), rel(in.jf))
		out = binary.LittleEndian.AppendUint32(out, in.k)
	}
	return out, true
}
