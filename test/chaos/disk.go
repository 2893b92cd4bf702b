package chaos

// disk.go: disk faults (issue 10). A node of a disk scenario keeps its data dir on a small ext4
// filesystem of its own instead of a docker volume: an image file on the host, attached to a loop
// device, mounted under diskRoot/<run id>/<container>/mnt and bind-mounted into the container at /data.
// Faults act on that filesystem from the host, and reach the node exactly as a real disk's would:
//
//   - full: a filler file takes every free block (fallocate, then writes until ENOSPC); freed by
//     deleting it.
//   - read-only: ext4's own error path (/sys/fs/ext4/<dev>/trigger_fs_error on a filesystem mounted
//     errors=remount-ro), which is what the kernel does after a disk error: every write from then on
//     fails with EROFS. `mount -o remount,ro` cannot do it while the node holds raft.db open for
//     writing (EBUSY). Repaired as an operator would: stop the node, unmount, e2fsck, mount, start.
//   - frozen: fsfreeze -f (every write and fsync blocks until fsfreeze -u).
//
// Every disk is released (thawed, unmounted, loop device detached, files removed) when its cluster is
// destroyed in t.Cleanup; a run that died before that is swept by the next run (SweepStaleDisks).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	// diskSize of each node's filesystem: room for a short scenario's log and snapshots, small enough
	// to fill in a moment.
	diskSize = 96 << 20
	// nodeUID owns the data dir: the image runs raftkv as 65532:65532.
	nodeUID = 65532
)

// diskRoot holds the disks of every run: <run id>/<container>/{disk.img,mnt}.
func diskRoot() string { return filepath.Join(os.TempDir(), "raftkv-chaos-disks") }

// DiskFaultsAvailable returns nil when the suite can give nodes filesystems of their own: root, the
// tools, and loop devices.
func DiskFaultsAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("disk faults need root (loop devices, mount, fsfreeze)")
	}
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "losetup", "mount", "umount", "fsfreeze"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("disk faults need %s (packages e2fsprogs, util-linux, mount): %w", tool, err)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return fmt.Errorf("disk faults need loop devices: %w", err)
	}
	return nil
}

// loopDisk is one node's filesystem.
type loopDisk struct {
	dir  string // diskRoot/<run>/<container>
	img  string
	mnt  string
	loop string // /dev/loopN while attached
}

func diskCmd(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return runCmd(ctx, name, args...)
}

// newLoopDisk makes, attaches and mounts a fresh filesystem for container, owned by the node's user.
func newLoopDisk(runID, container string) (*loopDisk, error) {
	d := &loopDisk{dir: filepath.Join(diskRoot(), runID, container)}
	d.img, d.mnt = filepath.Join(d.dir, "disk.img"), filepath.Join(d.dir, "mnt")
	if err := os.MkdirAll(d.mnt, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(d.img)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(diskSize)
	f.Close()
	if err != nil {
		return nil, err
	}
	// -m 0: no blocks reserved for root, so "full" means full for the node too.
	if _, err := diskCmd("mkfs.ext4", "-q", "-F", "-m", "0", "-L", "raftkv", d.img); err != nil {
		return nil, err
	}
	if err := d.attach(); err != nil {
		return nil, err
	}
	if err := os.Chown(d.mnt, nodeUID, nodeUID); err != nil {
		return nil, err
	}
	return d, os.Chmod(d.mnt, 0o700)
}

// attach attaches the image to a loop device and mounts it.
func (d *loopDisk) attach() error {
	loop, err := diskCmd("losetup", "--find", "--show", d.img)
	if err != nil {
		return err
	}
	d.loop = loop
	if _, err := diskCmd("mount", "-t", "ext4", "-o", "errors=remount-ro", loop, d.mnt); err != nil {
		_, _ = diskCmd("losetup", "-d", loop)
		d.loop = ""
		return err
	}
	return nil
}

// detach unmounts the filesystem and detaches the loop device.
func (d *loopDisk) detach() error {
	if d.loop == "" {
		return nil
	}
	_, _ = diskCmd("fsfreeze", "-u", d.mnt) // a frozen filesystem cannot be unmounted
	var errs []error
	if _, err := diskCmd("umount", d.mnt); err != nil {
		// Still busy (a container not yet gone): detach it lazily rather than leak it.
		if _, err2 := diskCmd("umount", "-l", d.mnt); err2 != nil {
			errs = append(errs, err, err2)
		}
	}
	if _, err := diskCmd("losetup", "-d", d.loop); err != nil {
		errs = append(errs, err)
	}
	d.loop = ""
	return errors.Join(errs...)
}

// release detaches the disk and removes its files.
func (d *loopDisk) release() error {
	err := d.detach()
	if err == nil {
		err = os.RemoveAll(d.dir)
	}
	return err
}

// wipe deletes everything in the filesystem (the node's whole data dir).
func (d *loopDisk) wipe() error {
	entries, err := os.ReadDir(d.mnt)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(d.mnt, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (d *loopDisk) filler() string { return filepath.Join(d.mnt, "chaos-filler") }

// fill takes every free block of the filesystem with a filler file.
func (d *loopDisk) fill() error {
	f, err := os.OpenFile(d.filler(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.mnt, &st); err != nil {
		return err
	}
	if free := int64(st.Bavail) * st.Bsize; free > 1<<20 {
		// Most of it at once; the rest block by block below (fallocate may stop short of the last few).
		if err := syscall.Fallocate(int(f.Fd()), 0, 0, free-(1<<20)); err != nil && !errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("fallocate %s: %w", d.filler(), err)
		}
	}
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("filling %s: %w", d.mnt, err)
		}
		if err := f.Sync(); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("filling %s: %w", d.mnt, err)
		}
	}
}

// free deletes the filler file.
func (d *loopDisk) free() error { return os.Remove(d.filler()) }

// freeBytes is what the node could still write.
func (d *loopDisk) freeBytes() int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.mnt, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}

// failReadOnly makes ext4 hit an error on this filesystem: mounted errors=remount-ro, it turns
// read-only at once and every write fails with EROFS, as after a real device error.
func (d *loopDisk) failReadOnly() error {
	if d.loop == "" {
		return errors.New("the disk is not attached")
	}
	return os.WriteFile(filepath.Join("/sys/fs/ext4", filepath.Base(d.loop), "trigger_fs_error"), []byte("raftkv chaos: read-only disk\n"), 0o200)
}

// repair is what an operator does after the kernel made the filesystem read-only (with the node
// stopped): unmount, check and repair the filesystem, mount it read-write again.
func (d *loopDisk) repair() error {
	if err := d.detach(); err != nil {
		return err
	}
	// e2fsck exits 1 when it fixed something (the error flag, the aborted journal): that is success.
	if out, err := diskCmd("e2fsck", "-f", "-y", d.img); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 {
			return fmt.Errorf("e2fsck: %w: %s", err, out)
		}
	}
	return d.attach()
}

func (d *loopDisk) freeze() error { _, err := diskCmd("fsfreeze", "-f", d.mnt); return err }
func (d *loopDisk) thaw() error   { _, err := diskCmd("fsfreeze", "-u", d.mnt); return err }

// SweepStaleDisks releases the disks of runs whose process is gone (a run killed by -timeout, say).
func SweepStaleDisks() ([]string, error) {
	runs, err := os.ReadDir(diskRoot())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var swept []string
	var errs []error
	for _, r := range runs {
		if runAlive(r.Name()) {
			continue
		}
		errs = append(errs, ReleaseRunDisks(r.Name()))
		swept = append(swept, r.Name())
	}
	return swept, errors.Join(errs...)
}

// ReleaseRunDisks releases every disk of run id that is still there.
func ReleaseRunDisks(runID string) error {
	dir := filepath.Join(diskRoot(), runID)
	disks, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, c := range disks {
		d := &loopDisk{dir: filepath.Join(dir, c.Name())}
		d.img, d.mnt = filepath.Join(d.dir, "disk.img"), filepath.Join(d.dir, "mnt")
		if out, err := diskCmd("losetup", "-j", d.img); err == nil && out != "" {
			d.loop, _, _ = strings.Cut(out, ":")
		}
		if d.loop == "" { // not attached: at most a mount left over
			_, _ = diskCmd("umount", "-l", d.mnt)
		}
		if err := d.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
