// Package imaging is the image store: the catalogue of the images in
// images_dir, which the RPC enumeration and the imaging agent read. The
// boot path does not use it yet.
//
// # What the catalogue lists
//
// Catalog walks images_dir and its subdirectories. A file is an image by
// its suffix, in any case: .wim, or a raw disk image .img, .img.zst
// (zstd) or .img.gz (gzip).
//
//   - A WIM gives one Image per index (Kind "wim"), read from its header and
//     XML data (see ReadWIM; Microsoft's "Windows Imaging File Format"
//     specification): Name is the image's NAME, else its DISPLAYNAME, else
//     "FILE #INDEX"; Description is DESCRIPTION (else DISPLAYDESCRIPTION);
//     Arch comes from WINDOWS/ARCH, a PROCESSOR_ARCHITECTURE value (0 x86,
//     5 arm, 6 ia64, 9 amd64, 12 arm64, anything else ""); Size is the
//     image's TOTALBYTES (0 when absent).
//   - A raw image gives one Image (Kind "raw", Index 1) named after its file,
//     with Size the file size, unless its manifest says otherwise.
//
// File is the path relative to images_dir with forward slashes, Path the
// same with backslashes (relative to the image share, which is images_dir),
// Group the first directory of the path ("" for files at the top level, the
// default group), FileSize the size on disk.
//
// Names starting with a dot (files and directories) are skipped, so partial
// copies such as rsync's are not listed. Symbolic links to files are
// followed while they stay inside images_dir (os.Root); links leading
// outside, or nowhere, are skipped and reported. Links to directories are
// not followed.
//
// # Manifests
//
// A raw image may have a manifest beside it, named after the image file
// plus ".json": win11.img.zst is described by win11.img.zst.json. It is one
// JSON object; every key is optional:
//
//	{
//	  "name": "Windows 11 Pro 24H2",
//	  "description": "sysprepped, drivers for the lab's NUCs",
//	  "arch": "amd64",
//	  "size": 68719476736,
//	  "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
//	  "target_disk": "nvme0n1"
//	}
//
// name and description replace the defaults; arch is amd64, x86, arm64,
// arm or ia64; size is the uncompressed size in bytes (for an uncompressed
// .img it must equal the file size); sha256 is the uncompressed image's
// digest, 64 hex digits; target_disk is a hint for the imaging agent
// (Image.TargetDisk). Unknown or repeated keys, wrong types and bad values
// refuse the whole manifest with a *ManifestError naming the file and the
// key. A refused manifest is a Problem and its image is still listed, as if
// it had none. A manifest without its image, or beside a WIM, is a Problem
// too.
//
// # Problems and caching
//
// Catalog.Scan returns the images and the problems ([]Problem: file and
// error), so the server can show what is wrong without logging from here;
// a malformed WIM is a *WIMError and appears only as a problem. Each Scan
// walks the directory again, so added and removed files show at once, and a
// WIM or manifest is parsed again only when the file changed (size,
// modification time, and on Linux inode and change time).
package imaging
