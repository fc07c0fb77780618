/* Decodes the rows and columns of a JPEG that a crop reads, with the system's libjpeg-turbo (>= 1.5: its
 * jpeg_skip_scanlines and jpeg_crop_scanline), into a caller's full-size canvas.
 *
 * Why: a top-down training sample reads a box of its image, and decoding the whole 640x480 JPEG is most of the
 * sample's CPU cost. libjpeg-turbo skips the IDCT and colour conversion of rows above the box, stops after its
 * last row and decodes only the column blocks (8 to 32 pixels wide) the box touches. Pixels inside the box equal a
 * full decode's, except up to one pixel at a cropped edge where fancy upsampling lacks its neighbour: the caller
 * asks for a margin around what it reads. One kind of file is refused instead: a progressive JPEG whose
 * coefficients are not all refined, which libjpeg smooths block by block across the crop's edges (the caller then
 * decodes it whole). The Python side (jpeg_region.py) checks the output against a full decode once per process
 * before using it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdio.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>

struct error_manager {
  struct jpeg_error_mgr pub;
  jmp_buf escape;
  char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo) {
  struct error_manager *err = (struct error_manager *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->escape, 1);
}

/* Warnings (corrupt or truncated data) are only counted: the caller then decodes the whole file as OpenCV would. */
static void on_message(j_common_ptr cinfo, int level) {
  if (level < 0) cinfo->err->num_warnings++;
}

/* Whether libjpeg will smooth the blocks of this file: a progressive scan left some coefficient of some component
 * unsent or not fully refined (coef_bits not 0), as in a file cut after its first scans; its block smoothing reads
 * neighbouring blocks, so a cropped decode differs from a whole one inside the crop. After jpeg_start_decompress,
 * which has read every scan of a progressive file. */
static int unrefined_progressive(j_decompress_ptr cinfo) {
  if (!cinfo->progressive_mode || cinfo->coef_bits == NULL) return 0;
  for (int ci = 0; ci < cinfo->num_components; ci++)
    for (int k = 0; k < DCTSIZE2; k++)
      if (cinfo->coef_bits[ci][k] != 0) return 1;
  return 0;
}

static const char DOC[] =
    "decode_into(data, canvas, top, bottom, left, right, mirror) -> number of libjpeg warnings\n\n"
    "Decode rows [top, bottom) and at least columns [left, right) of the JPEG `data` as BGR into `canvas`, a\n"
    "writable C-contiguous uint8 buffer of the image's full height x width x 3; with `mirror`, into the left-right\n"
    "mirrored image's place (the region is then in the file's own columns). Other pixels are left as they are.\n"
    "Raises ValueError with libjpeg's message when the file cannot be decoded, or when the canvas does not fit.";

static PyObject *decode_into(PyObject *self, PyObject *args) {
  Py_buffer src, dst;
  Py_ssize_t top, bottom, left, right;
  int mirror;
  if (!PyArg_ParseTuple(args, "y*w*nnnnp", &src, &dst, &top, &bottom, &left, &right, &mirror)) return NULL;
  struct jpeg_decompress_struct cinfo;
  struct error_manager err;
  /* volatile: set between setjmp and a possible longjmp, and read after it */
  const char *volatile problem = NULL;
  volatile long warnings = 0;
  JSAMPLE *volatile row_buffer = NULL;
  memset(&cinfo, 0, sizeof cinfo);  /* jpeg_destroy_decompress is then safe even if creation itself failed */
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_error;
  err.pub.emit_message = on_message;
  Py_BEGIN_ALLOW_THREADS
  if (setjmp(err.escape)) {  /* before jpeg_create_decompress, which may fail too */
    problem = err.message;
  } else {
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, (const unsigned char *)src.buf, (unsigned long)src.len);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_EXT_BGR;  /* the defaults otherwise: accurate integer IDCT, fancy upsampling */
    jpeg_start_decompress(&cinfo);
    size_t width = cinfo.output_width, stride = width * 3;
    if (cinfo.output_components != 3 || (size_t)dst.len != stride * cinfo.output_height) {
      problem = "the canvas is not the image's height x width x 3 bytes";
    } else if (left < 0 || top < 0 || left >= right || (size_t)right > width || top >= bottom ||
               (size_t)bottom > cinfo.output_height) {
      problem = "the region is empty or outside the image";
    } else if (unrefined_progressive(&cinfo)) {
      problem = "a progressive JPEG with unrefined coefficients (block smoothing): decode it whole";
    } else {
      JDIMENSION x_offset = (JDIMENSION)left, crop_width = (JDIMENSION)(right - left);
      jpeg_crop_scanline(&cinfo, &x_offset, &crop_width);
      if (mirror) row_buffer = (JSAMPLE *)malloc((size_t)crop_width * 3);
      if (mirror && row_buffer == NULL) {
        problem = "out of memory";
      } else {
        if (top > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)top);
        while (cinfo.output_scanline < (JDIMENSION)bottom) {
          JSAMPLE *canvas_row = (JSAMPLE *)dst.buf + (size_t)cinfo.output_scanline * stride;
          JSAMPROW out = mirror ? row_buffer : canvas_row + (size_t)x_offset * 3;
          jpeg_read_scanlines(&cinfo, &out, 1);
          if (mirror) {
            JSAMPLE *to = canvas_row + (width - 1 - x_offset) * 3;
            for (JDIMENSION i = 0; i < crop_width; i++, to -= 3) memcpy(to, row_buffer + (size_t)i * 3, 3);
          }
        }
        warnings = err.pub.num_warnings;
      }
    }
  }
  free(row_buffer);
  jpeg_destroy_decompress(&cinfo);
  Py_END_ALLOW_THREADS
  PyBuffer_Release(&src);
  PyBuffer_Release(&dst);
  if (problem != NULL) {
    PyErr_SetString(PyExc_ValueError, problem);
    return NULL;
  }
  return PyLong_FromLong(warnings);
}

static PyObject *library_version(PyObject *self, PyObject *noargs) {
#ifdef LIBJPEG_TURBO_VERSION
#define IPR_STR2(x) #x
#define IPR_STR(x) IPR_STR2(x)
  return PyUnicode_FromString("libjpeg-turbo " IPR_STR(LIBJPEG_TURBO_VERSION));
#else
  return PyUnicode_FromFormat("libjpeg %d", JPEG_LIB_VERSION);
#endif
}

static PyMethodDef METHODS[] = {
    {"decode_into", decode_into, METH_VARARGS, DOC},
    {"library_version", library_version, METH_NOARGS, "The libjpeg this module was built against."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_jpeg_region",
                                    "Region decoding of JPEGs with libjpeg-turbo (see jpeg_region.py).", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jpeg_region(void) { return PyModule_Create(&MODULE); }
