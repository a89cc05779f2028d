#!/usr/bin/env bash
# Prints the scripts/deps.sh specs of what building, checking and booting
# appliance images needs.
echo mkfs.ext4:e2fsprogs e2fsck:e2fsprogs sfdisk:fdisk fsck.vfat:dosfstools mcopy:mtools unsquashfs:squashfs-tools \
	qemu-system-x86_64:qemu-system-x86 /usr/share/OVMF/OVMF_CODE_4M.fd:ovmf
