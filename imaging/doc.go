// Package imaging will hold the image store: the catalogue of images in
// images_dir (raw disk images and WIM files with their manifests), which
// the RPC enumeration and the imaging agent read. The RPC and imaging
// issues build it; the boot path does not use it yet.
package imaging
