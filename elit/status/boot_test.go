package status

import "testing"

func TestParseCmdline(t *testing.T) {
	const uuid = "root=PARTUUID=60c24cc1-f3f9-427a-8199-b2a5b2b90001"
	for _, tt := range []struct {
		in   string
		want Boot
	}{
		{"console=ttyS0 " + uuid + "/PARTNROFF=1 ro", Boot{RootPartition: 2}},
		{uuid + "/PARTNROFF=2 ro gokrazy.try_boot_inactive=1", Boot{RootPartition: 3, Trial: true}},
		{uuid + "/PARTNROFF=2 gokrazy.switch_on_boot=1", Boot{RootPartition: 3}},
		{"BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro", Boot{}},
	} {
		if got := ParseCmdline(tt.in); got != tt.want {
			t.Errorf("ParseCmdline(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 root=PARTUUID=60c24cc1-f3f9-427a-8199-b2a5b2b90001/PARTNROFF=1 ro gokrazy.try_boot_inactive=1")
	f.Add("root=/dev/mmcblk0p2")
	f.Fuzz(func(t *testing.T, s string) {
		b := ParseCmdline(s)
		if b.RootPartition != 0 && b.RootPartition != 2 && b.RootPartition != 3 {
			t.Fatalf("root partition %d", b.RootPartition)
		}
	})
}
