/*
 * fakecam: a fake V4L2 capture device at the system-call boundary.
 *
 * Loaded with LD_PRELOAD, it answers open/ioctl/mmap/poll/close for the
 * device paths listed in FAKECAM_DEVICES and forwards everything else to the
 * real libc (dlsym(RTLD_NEXT)). It lets the producer's V4L2 code, including
 * the unmodified `v4l` crate, run against "cameras" on machines that have no
 * /dev/video* and cannot load vivid/v4l2loopback.
 *
 * Build:  cc -shared -fPIC -O2 -o libfakecam.so fakecam.c -ldl -lpthread
 *
 * Environment:
 *   FAKECAM_DEVICES      "path=kind[,path=kind...]", kind is "yuyv" or "mjpeg",
 *                        e.g. "/dev/video90=yuyv,/dev/video91=mjpeg".
 *   FAKECAM_JPEG_DIR     directory holding "<w>x<h>.jpg" for every size the
 *                        MJPEG camera offers (640x480, 1280x720).
 *   FAKECAM_CONTROL_DIR  directory; the file named after the device's basename
 *                        (e.g. "video90") holds "<state> [<generation>]":
 *                          ok      normal operation (also when the file is absent)
 *                          unplug  every ioctl on open fds fails with ENODEV, a
 *                                  blocked DQBUF returns ENODEV, poll reports
 *                                  POLLERR|POLLHUP, open fails with ENOENT
 *                          hang    no frame is ever completed: poll never
 *                                  reports POLLIN, a blocking DQBUF blocks,
 *                                  everything else works
 *                        An fd opened under one generation is dead (ENODEV)
 *                        once the generation changes: write "ok 1" to replug.
 *
 * Cameras:
 *   yuyv:  YUYV and NV12 at 640x480, 1280x720, 1920x1080, each at 60 and 30 fps.
 *   mjpeg: MJPG at 640x480 and 1280x720 at 30 and 15 fps; YUYV 640x480 at 30.
 *
 * Frames are completed at the negotiated rate from STREAMON on (absolute
 * deadlines, frame n at t0 + n/fps). A frame that finds no queued buffer is
 * dropped and its sequence number skipped, as drivers do. Raw frames are a
 * solid picture whose luma changes every frame; the first 16 bytes are
 * "FAKECAM1" and the little-endian u64 sequence. MJPEG frames are the JPEG
 * file with a COM segment "FAKECAM1 seq=<n>" inserted after SOI. Buffers carry
 * V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC timestamps (the frame's deadline).
 *
 * The fd handed out is a real memfd, so mmap of the buffers is a real shared
 * mapping and fd numbers never collide with real files.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEVICES 8
#define MAX_FDS 32
#define MAX_BUFS 8
#define MAX_FD_NUMBER 65536

/* ---- camera descriptions ------------------------------------------------ */

struct size_desc {
    uint32_t w, h;
    int nfps;
    uint32_t fps[4];
};

struct fmt_desc {
    uint32_t fourcc;
    const char *name;
    int compressed;
    int nsizes;
    struct size_desc sizes[4];
};

struct cam_desc {
    const char *kind;
    const char *card;
    int nfmts;
    struct fmt_desc fmts[3];
};

static const struct cam_desc CAMS[] = {
    {"yuyv",
     "fakecam YUYV camera",
     2,
     {
         {V4L2_PIX_FMT_YUYV,
          "YUYV 4:2:2",
          0,
          3,
          {{640, 480, 2, {60, 30}}, {1280, 720, 2, {60, 30}}, {1920, 1080, 2, {60, 30}}}},
         {V4L2_PIX_FMT_NV12,
          "Y/UV 4:2:0",
          0,
          3,
          {{640, 480, 2, {60, 30}}, {1280, 720, 2, {60, 30}}, {1920, 1080, 2, {60, 30}}}},
     }},
    {"mjpeg",
     "fakecam MJPEG camera",
     2,
     {
         {V4L2_PIX_FMT_MJPEG, "Motion-JPEG", 1, 2, {{640, 480, 2, {30, 15}}, {1280, 720, 2, {30, 15}}}},
         {V4L2_PIX_FMT_YUYV, "YUYV 4:2:2", 0, 1, {{640, 480, 1, {30}}}},
     }},
};

/* ---- state ---------------------------------------------------------------- */

struct device {
    char path[256];
    const struct cam_desc *cam;
};

struct fake {
    int used;
    int fd;
    int nonblock;
    unsigned gen;
    const struct device *dev;
    /* negotiated */
    const struct fmt_desc *fmt;
    uint32_t w, h, bpl, sizeimage, fps;
    /* buffers */
    int nbufs;
    size_t stride; /* page-aligned distance between buffers in the memfd */
    uint8_t *map;  /* our own mapping of all buffers */
    int state[MAX_BUFS]; /* 0 with the application, 1 queued, 2 done */
    int queue[MAX_BUFS], qlen;
    int done[MAX_BUFS], dlen;
    uint32_t seq[MAX_BUFS], used_bytes[MAX_BUFS];
    uint64_t ts_ns[MAX_BUFS];
    /* streaming */
    int streaming;
    uint64_t t0, next_no;
    uint8_t *jpeg;
    size_t jpeg_len;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct device devices[MAX_DEVICES];
static int ndevices;
static struct fake fakes[MAX_FDS];
/* Fast "is this fd ours" check without the lock (hot paths: close, poll). */
static volatile unsigned char is_fake_fd[MAX_FD_NUMBER];

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_ioctl)(int, unsigned long, ...);
static long (*real_syscall)(long, ...);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off64_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);

static void init(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_openat64 = dlsym(RTLD_NEXT, "openat64");
    real_close = dlsym(RTLD_NEXT, "close");
    real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    real_syscall = dlsym(RTLD_NEXT, "syscall");
    real_mmap = dlsym(RTLD_NEXT, "mmap");
    real_mmap64 = dlsym(RTLD_NEXT, "mmap64");
    real_poll = dlsym(RTLD_NEXT, "poll");

    const char *list = getenv("FAKECAM_DEVICES");
    if (!list)
        return;
    char buf[2048];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item && ndevices < MAX_DEVICES;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq)
            continue;
        *eq = 0;
        const struct cam_desc *cam = NULL;
        for (size_t i = 0; i < sizeof CAMS / sizeof CAMS[0]; i++)
            if (strcmp(CAMS[i].kind, eq + 1) == 0)
                cam = &CAMS[i];
        if (!cam) {
            fprintf(stderr, "fakecam: unknown camera kind '%s' for %s\n", eq + 1, item);
            continue;
        }
        snprintf(devices[ndevices].path, sizeof devices[ndevices].path, "%s", item);
        devices[ndevices].cam = cam;
        ndevices++;
    }
}

static void ensure_init(void) { pthread_once(&once, init); }

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    nanosleep(&ts, NULL);
}

enum plug { PLUG_OK, PLUG_UNPLUGGED, PLUG_HANG };

/* Reads the control file of a device: its state and plug generation. */
static enum plug control_state(const struct device *dev, unsigned *gen) {
    *gen = 0;
    const char *dir = getenv("FAKECAM_CONTROL_DIR");
    if (!dir)
        return PLUG_OK;
    const char *base = strrchr(dev->path, '/');
    base = base ? base + 1 : dev->path;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, base);
    int fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return PLUG_OK;
    char text[64] = {0};
    ssize_t n = read(fd, text, sizeof text - 1);
    real_close(fd);
    if (n <= 0)
        return PLUG_OK;
    char word[16] = {0};
    unsigned g = 0;
    if (sscanf(text, "%15s %u", word, &g) < 1)
        return PLUG_OK;
    *gen = g;
    if (strcmp(word, "unplug") == 0)
        return PLUG_UNPLUGGED;
    if (strcmp(word, "hang") == 0)
        return PLUG_HANG;
    return PLUG_OK;
}

/* The fd's view of the device: dead once unplugged or replugged since open. */
static enum plug fd_state(const struct fake *f) {
    unsigned gen;
    enum plug p = control_state(f->dev, &gen);
    if (p == PLUG_UNPLUGGED || gen != f->gen)
        return PLUG_UNPLUGGED;
    return p;
}

static const struct device *find_device(const char *path) {
    ensure_init();
    if (!path)
        return NULL;
    for (int i = 0; i < ndevices; i++)
        if (strcmp(devices[i].path, path) == 0)
            return &devices[i];
    return NULL;
}

static struct fake *lookup(int fd) {
    if (fd < 0 || fd >= MAX_FD_NUMBER || !is_fake_fd[fd])
        return NULL;
    for (int i = 0; i < MAX_FDS; i++)
        if (fakes[i].used && fakes[i].fd == fd)
            return &fakes[i];
    return NULL;
}

/* ---- formats -------------------------------------------------------------- */

static const struct fmt_desc *find_fmt(const struct cam_desc *cam, uint32_t fourcc) {
    for (int i = 0; i < cam->nfmts; i++)
        if (cam->fmts[i].fourcc == fourcc)
            return &cam->fmts[i];
    return NULL;
}

static const struct size_desc *find_size(const struct fmt_desc *fmt, uint32_t w, uint32_t h) {
    for (int i = 0; i < fmt->nsizes; i++)
        if (fmt->sizes[i].w == w && fmt->sizes[i].h == h)
            return &fmt->sizes[i];
    return NULL;
}

static const struct size_desc *nearest_size(const struct fmt_desc *fmt, uint32_t w, uint32_t h) {
    const struct size_desc *best = &fmt->sizes[0];
    long best_d = -1;
    for (int i = 0; i < fmt->nsizes; i++) {
        long d = labs((long)fmt->sizes[i].w - (long)w) + labs((long)fmt->sizes[i].h - (long)h);
        if (best_d < 0 || d < best_d) {
            best = &fmt->sizes[i];
            best_d = d;
        }
    }
    return best;
}

static uint32_t nearest_fps(const struct size_desc *s, uint32_t fps) {
    uint32_t best = s->fps[0];
    for (int i = 0; i < s->nfps; i++)
        if (labs((long)s->fps[i] - (long)fps) < labs((long)best - (long)fps))
            best = s->fps[i];
    return best;
}

static void geometry(const struct fmt_desc *fmt, uint32_t w, uint32_t h, uint32_t *bpl, uint32_t *size) {
    switch (fmt->fourcc) {
    case V4L2_PIX_FMT_NV12:
        *bpl = w;
        *size = w * h * 3 / 2;
        break;
    case V4L2_PIX_FMT_MJPEG:
        *bpl = 0;
        *size = w * h * 2;
        break;
    default: /* YUYV */
        *bpl = w * 2;
        *size = w * h * 2;
        break;
    }
}

static void fill_pix(const struct fake *f, const struct fmt_desc *fmt, uint32_t w, uint32_t h,
                     struct v4l2_pix_format *pix) {
    (void)f;
    memset(pix, 0, sizeof *pix);
    pix->width = w;
    pix->height = h;
    pix->pixelformat = fmt->fourcc;
    pix->field = V4L2_FIELD_NONE;
    geometry(fmt, w, h, &pix->bytesperline, &pix->sizeimage);
    pix->colorspace = fmt->compressed ? V4L2_COLORSPACE_JPEG : V4L2_COLORSPACE_SRGB;
}

/* ---- frames --------------------------------------------------------------- */

static int load_jpeg(struct fake *f) {
    free(f->jpeg);
    f->jpeg = NULL;
    const char *dir = getenv("FAKECAM_JPEG_DIR");
    if (!dir) {
        fprintf(stderr, "fakecam: FAKECAM_JPEG_DIR is not set\n");
        return -EIO;
    }
    char path[512];
    snprintf(path, sizeof path, "%s/%ux%u.jpg", dir, f->w, f->h);
    int fd = real_open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "fakecam: cannot open %s\n", path);
        return -EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < 4 || (size_t)st.st_size + 64 > f->sizeimage) {
        real_close(fd);
        fprintf(stderr, "fakecam: %s is empty or larger than a buffer\n", path);
        return -EIO;
    }
    f->jpeg = malloc((size_t)st.st_size);
    f->jpeg_len = (size_t)st.st_size;
    size_t got = 0;
    while (got < f->jpeg_len) {
        ssize_t n = read(fd, f->jpeg + got, f->jpeg_len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    real_close(fd);
    if (got != f->jpeg_len || f->jpeg[0] != 0xFF || f->jpeg[1] != 0xD8) {
        fprintf(stderr, "fakecam: %s is not a JPEG\n", path);
        free(f->jpeg);
        f->jpeg = NULL;
        return -EIO;
    }
    return 0;
}

static void fill_frame(struct fake *f, int index, uint64_t no) {
    uint8_t *p = f->map + (size_t)index * f->stride;
    uint32_t used;
    if (f->fmt->fourcc == V4L2_PIX_FMT_MJPEG) {
        char comment[48];
        int clen = snprintf(comment, sizeof comment, "FAKECAM1 seq=%llu", (unsigned long long)no);
        p[0] = 0xFF;
        p[1] = 0xD8;
        p[2] = 0xFF;
        p[3] = 0xFE;
        p[4] = (uint8_t)((clen + 2) >> 8);
        p[5] = (uint8_t)(clen + 2);
        memcpy(p + 6, comment, (size_t)clen);
        memcpy(p + 6 + clen, f->jpeg + 2, f->jpeg_len - 2);
        used = (uint32_t)(6 + clen + f->jpeg_len - 2);
    } else {
        uint8_t y = (uint8_t)(16 + (no * 3) % 220);
        if (f->fmt->fourcc == V4L2_PIX_FMT_NV12) {
            memset(p, y, (size_t)f->bpl * f->h);
            memset(p + (size_t)f->bpl * f->h, 128, (size_t)f->bpl * f->h / 2);
        } else {
            for (uint32_t x = 0; x < f->w * 2; x += 2) {
                p[x] = y;
                p[x + 1] = 128;
            }
            for (uint32_t r = 1; r < f->h; r++)
                memcpy(p + (size_t)r * f->bpl, p, f->w * 2);
        }
        memcpy(p, "FAKECAM1", 8);
        memcpy(p + 8, &no, 8);
        used = f->sizeimage;
    }
    f->used_bytes[index] = used;
    f->seq[index] = (uint32_t)no;
    f->ts_ns[index] = f->t0 + no * 1000000000ull / f->fps;
}

/* Completes every frame whose deadline has passed (caller holds the lock). */
static void advance(struct fake *f, enum plug p) {
    if (!f->streaming)
        return;
    uint64_t now = mono_ns();
    uint64_t due = (now - f->t0) * f->fps / 1000000000ull + 1; /* frames 0..due-1 are due */
    if (p != PLUG_OK) {
        f->next_no = due; /* a hung or dead camera delivers nothing */
        return;
    }
    while (f->next_no < due) {
        if (f->qlen == 0) {
            f->next_no = due; /* no buffer: these frames are dropped */
            break;
        }
        int index = f->queue[0];
        memmove(f->queue, f->queue + 1, sizeof(int) * (size_t)(f->qlen - 1));
        f->qlen--;
        fill_frame(f, index, f->next_no);
        f->state[index] = 2;
        f->done[f->dlen++] = index;
        f->next_no++;
    }
}

static void free_buffers(struct fake *f) {
    if (f->map)
        munmap(f->map, f->stride * (size_t)f->nbufs);
    f->map = NULL;
    f->nbufs = 0;
    f->qlen = f->dlen = 0;
    if (ftruncate(f->fd, 0) != 0) {
        /* nothing sensible to do: the memfd keeps its old size */
    }
}

static void fill_buffer(const struct fake *f, int index, struct v4l2_buffer *b) {
    uint32_t type = b->type;
    memset(b, 0, sizeof *b);
    b->index = (uint32_t)index;
    b->type = type;
    b->memory = V4L2_MEMORY_MMAP;
    b->m.offset = (uint32_t)((size_t)index * f->stride);
    b->length = f->sizeimage;
    b->field = V4L2_FIELD_NONE;
    b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC | V4L2_BUF_FLAG_TSTAMP_SRC_SOE;
    if (f->state[index] == 1)
        b->flags |= V4L2_BUF_FLAG_QUEUED;
    if (f->state[index] == 2)
        b->flags |= V4L2_BUF_FLAG_DONE;
    b->bytesused = f->used_bytes[index];
    b->sequence = f->seq[index];
    b->timestamp.tv_sec = (time_t)(f->ts_ns[index] / 1000000000ull);
    b->timestamp.tv_usec = (suseconds_t)(f->ts_ns[index] % 1000000000ull / 1000);
}

/* ---- ioctls --------------------------------------------------------------- */

/* Returns 0 or -errno; called with the lock held (DQBUF may drop it). */
static int fake_ioctl(struct fake *f, unsigned long request, void *arg) {
    enum plug p = fd_state(f);
    if (p == PLUG_UNPLUGGED)
        return -ENODEV;
    const struct cam_desc *cam = f->dev->cam;
    switch ((unsigned int)request) {
    case (unsigned int)VIDIOC_QUERYCAP: {
        struct v4l2_capability *c = arg;
        memset(c, 0, sizeof *c);
        snprintf((char *)c->driver, sizeof c->driver, "fakecam");
        snprintf((char *)c->card, sizeof c->card, "%s", cam->card);
        const char *base = strrchr(f->dev->path, '/');
        snprintf((char *)c->bus_info, sizeof c->bus_info, "platform:fakecam-%s", base ? base + 1 : "0");
        c->version = (6u << 16) | (1u << 8);
        c->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        c->capabilities = c->device_caps | V4L2_CAP_DEVICE_CAPS;
        return 0;
    }
    case (unsigned int)VIDIOC_ENUMINPUT: {
        struct v4l2_input *in = arg;
        if (in->index != 0)
            return -EINVAL;
        memset(in, 0, sizeof *in);
        snprintf((char *)in->name, sizeof in->name, "Camera 1");
        in->type = V4L2_INPUT_TYPE_CAMERA;
        return 0;
    }
    case (unsigned int)VIDIOC_G_INPUT:
        *(int *)arg = 0;
        return 0;
    case (unsigned int)VIDIOC_S_INPUT:
        return *(int *)arg == 0 ? 0 : -EINVAL;
    case (unsigned int)VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *d = arg;
        if (d->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || d->index >= (uint32_t)cam->nfmts)
            return -EINVAL;
        const struct fmt_desc *fmt = &cam->fmts[d->index];
        uint32_t index = d->index, type = d->type;
        memset(d, 0, sizeof *d);
        d->index = index;
        d->type = type;
        d->flags = fmt->compressed ? V4L2_FMT_FLAG_COMPRESSED : 0;
        snprintf((char *)d->description, sizeof d->description, "%s", fmt->name);
        d->pixelformat = fmt->fourcc;
        return 0;
    }
    case (unsigned int)VIDIOC_ENUM_FRAMESIZES: {
        struct v4l2_frmsizeenum *s = arg;
        const struct fmt_desc *fmt = find_fmt(cam, s->pixel_format);
        if (!fmt || s->index >= (uint32_t)fmt->nsizes)
            return -EINVAL;
        s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
        s->discrete.width = fmt->sizes[s->index].w;
        s->discrete.height = fmt->sizes[s->index].h;
        return 0;
    }
    case (unsigned int)VIDIOC_ENUM_FRAMEINTERVALS: {
        struct v4l2_frmivalenum *e = arg;
        const struct fmt_desc *fmt = find_fmt(cam, e->pixel_format);
        const struct size_desc *s = fmt ? find_size(fmt, e->width, e->height) : NULL;
        if (!s || e->index >= (uint32_t)s->nfps)
            return -EINVAL;
        e->type = V4L2_FRMIVAL_TYPE_DISCRETE;
        e->discrete.numerator = 1;
        e->discrete.denominator = s->fps[e->index];
        return 0;
    }
    case (unsigned int)VIDIOC_G_FMT: {
        struct v4l2_format *fm = arg;
        if (fm->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return -EINVAL;
        fill_pix(f, f->fmt, f->w, f->h, &fm->fmt.pix);
        return 0;
    }
    case (unsigned int)VIDIOC_S_FMT:
    case (unsigned int)VIDIOC_TRY_FMT: {
        struct v4l2_format *fm = arg;
        if (fm->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return -EINVAL;
        int apply = (unsigned int)request == (unsigned int)VIDIOC_S_FMT;
        if (apply && (f->nbufs > 0 || f->streaming))
            return -EBUSY;
        const struct fmt_desc *fmt = find_fmt(cam, fm->fmt.pix.pixelformat);
        if (!fmt)
            fmt = &cam->fmts[0];
        const struct size_desc *s = nearest_size(fmt, fm->fmt.pix.width, fm->fmt.pix.height);
        fill_pix(f, fmt, s->w, s->h, &fm->fmt.pix);
        if (apply) {
            f->fmt = fmt;
            f->w = s->w;
            f->h = s->h;
            geometry(fmt, s->w, s->h, &f->bpl, &f->sizeimage);
            f->fps = nearest_fps(s, f->fps);
        }
        return 0;
    }
    case (unsigned int)VIDIOC_G_PARM:
    case (unsigned int)VIDIOC_S_PARM: {
        struct v4l2_streamparm *sp = arg;
        if (sp->type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return -EINVAL;
        if ((unsigned int)request == (unsigned int)VIDIOC_S_PARM) {
            if (f->streaming)
                return -EBUSY;
            struct v4l2_fract t = sp->parm.capture.timeperframe;
            if (t.numerator && t.denominator) {
                uint32_t want = (t.denominator + t.numerator / 2) / t.numerator;
                f->fps = nearest_fps(find_size(f->fmt, f->w, f->h), want);
            }
        }
        memset(&sp->parm, 0, sizeof sp->parm);
        sp->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        sp->parm.capture.timeperframe.numerator = 1;
        sp->parm.capture.timeperframe.denominator = f->fps;
        return 0;
    }
    case (unsigned int)VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *rb = arg;
        if (rb->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || rb->memory != V4L2_MEMORY_MMAP)
            return -EINVAL;
        if (f->streaming)
            return -EBUSY;
        free_buffers(f);
        memset(f->state, 0, sizeof f->state);
        memset(f->used_bytes, 0, sizeof f->used_bytes);
        memset(f->seq, 0, sizeof f->seq);
        memset(f->ts_ns, 0, sizeof f->ts_ns);
        rb->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP;
        if (rb->count == 0)
            return 0;
        uint32_t count = rb->count < 2 ? 2 : rb->count > MAX_BUFS ? MAX_BUFS : rb->count;
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        f->stride = ((size_t)f->sizeimage + page - 1) / page * page;
        if (ftruncate(f->fd, (off_t)(f->stride * count)) != 0)
            return -ENOMEM;
        void *map = real_mmap(NULL, f->stride * count, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
        if (map == MAP_FAILED)
            return -ENOMEM;
        f->map = map;
        f->nbufs = (int)count;
        rb->count = count;
        return 0;
    }
    case (unsigned int)VIDIOC_QUERYBUF: {
        struct v4l2_buffer *b = arg;
        if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->index >= (uint32_t)f->nbufs)
            return -EINVAL;
        fill_buffer(f, (int)b->index, b);
        return 0;
    }
    case (unsigned int)VIDIOC_QBUF: {
        struct v4l2_buffer *b = arg;
        if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->memory != V4L2_MEMORY_MMAP ||
            b->index >= (uint32_t)f->nbufs || f->state[b->index] != 0)
            return -EINVAL; /* like vb2: a buffer already queued cannot be queued again */
        f->state[b->index] = 1;
        f->queue[f->qlen++] = (int)b->index;
        fill_buffer(f, (int)b->index, b);
        return 0;
    }
    case (unsigned int)VIDIOC_DQBUF: {
        struct v4l2_buffer *b = arg;
        if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->memory != V4L2_MEMORY_MMAP)
            return -EINVAL;
        for (;;) {
            if (!f->used)
                return -EBADF; /* closed by another thread while we waited */
            p = fd_state(f);
            if (p == PLUG_UNPLUGGED)
                return -ENODEV;
            if (!f->streaming)
                return -EINVAL;
            advance(f, p);
            if (f->dlen > 0) {
                int index = f->done[0];
                memmove(f->done, f->done + 1, sizeof(int) * (size_t)(f->dlen - 1));
                f->dlen--;
                f->state[index] = 0;
                fill_buffer(f, index, b);
                return 0;
            }
            if (f->nonblock)
                return -EAGAIN;
            pthread_mutex_unlock(&lock);
            sleep_ns(2000000);
            pthread_mutex_lock(&lock);
        }
    }
    case (unsigned int)VIDIOC_STREAMON: {
        int *type = arg;
        if (*type != V4L2_BUF_TYPE_VIDEO_CAPTURE || f->nbufs == 0)
            return -EINVAL;
        if (f->streaming)
            return 0;
        if (f->fmt->fourcc == V4L2_PIX_FMT_MJPEG) {
            int rc = load_jpeg(f);
            if (rc)
                return rc;
        }
        f->streaming = 1;
        f->t0 = mono_ns();
        f->next_no = 0;
        return 0;
    }
    case (unsigned int)VIDIOC_STREAMOFF: {
        int *type = arg;
        if (*type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
            return -EINVAL;
        f->streaming = 0;
        f->qlen = f->dlen = 0;
        memset(f->state, 0, sizeof f->state);
        return 0;
    }
    default:
        return -ENOTTY;
    }
}

static int do_ioctl(int fd, unsigned long request, void *arg) {
    pthread_mutex_lock(&lock);
    struct fake *f = lookup(fd);
    int rc = f ? fake_ioctl(f, request, arg) : -EBADF;
    pthread_mutex_unlock(&lock);
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

/* ---- intercepted entry points --------------------------------------------- */

static int fake_open(const char *path, int flags) {
    const struct device *dev = find_device(path);
    if (!dev)
        return -2; /* not ours */
    unsigned gen;
    if (control_state(dev, &gen) == PLUG_UNPLUGGED) {
        errno = ENOENT;
        return -1;
    }
    const char *base = strrchr(path, '/');
    int fd = memfd_create(base ? base + 1 : path, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0)
        return -1;
    if (fd >= MAX_FD_NUMBER) {
        real_close(fd);
        errno = EMFILE;
        return -1;
    }
    pthread_mutex_lock(&lock);
    struct fake *f = NULL;
    for (int i = 0; i < MAX_FDS; i++)
        if (!fakes[i].used) {
            f = &fakes[i];
            break;
        }
    if (!f) {
        pthread_mutex_unlock(&lock);
        real_close(fd);
        errno = EMFILE;
        return -1;
    }
    memset(f, 0, sizeof *f);
    f->used = 1;
    f->fd = fd;
    f->nonblock = (flags & O_NONBLOCK) != 0;
    f->gen = gen;
    f->dev = dev;
    f->fmt = &dev->cam->fmts[0];
    f->w = f->fmt->sizes[0].w;
    f->h = f->fmt->sizes[0].h;
    f->fps = f->fmt->sizes[0].fps[0];
    geometry(f->fmt, f->w, f->h, &f->bpl, &f->sizeimage);
    is_fake_fd[fd] = 1;
    pthread_mutex_unlock(&lock);
    return fd;
}

#define OPEN_BODY(real_call)                                                                       \
    ensure_init();                                                                                 \
    mode_t mode = 0;                                                                               \
    if (flags & (O_CREAT | O_TMPFILE)) {                                                           \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode = va_arg(ap, mode_t);                                                                 \
        va_end(ap);                                                                                \
    }                                                                                              \
    int fd = fake_open(path, flags);                                                               \
    if (fd != -2)                                                                                  \
        return fd;                                                                                 \
    return real_call;

int open(const char *path, int flags, ...) { OPEN_BODY(real_open(path, flags, mode)) }
int open64(const char *path, int flags, ...) { OPEN_BODY(real_open64(path, flags, mode)) }
int openat(int dirfd, const char *path, int flags, ...) {
    OPEN_BODY(real_openat(dirfd, path, flags, mode))
}
int openat64(int dirfd, const char *path, int flags, ...) {
    OPEN_BODY(real_openat64(dirfd, path, flags, mode))
}

int close(int fd) {
    ensure_init();
    if (fd >= 0 && fd < MAX_FD_NUMBER && is_fake_fd[fd]) {
        pthread_mutex_lock(&lock);
        struct fake *f = lookup(fd);
        if (f) {
            free_buffers(f);
            free(f->jpeg);
            f->used = 0;
            is_fake_fd[fd] = 0;
        }
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}

int ioctl(int fd, unsigned long request, ...) {
    ensure_init();
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (fd >= 0 && fd < MAX_FD_NUMBER && is_fake_fd[fd])
        return do_ioctl(fd, request, arg);
    return real_ioctl(fd, request, arg);
}

/*
 * The v4l crate (feature v4l2, its default) issues ioctls through
 * libc::syscall(SYS_ioctl, ...) rather than ioctl(), so syscall() has to be
 * intercepted too. Reading six variadic longs when fewer were passed is what
 * every syscall() wrapper does on x86-64 and aarch64 (they are registers).
 */
long syscall(long number, ...) {
    ensure_init();
    va_list ap;
    va_start(ap, number);
    long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
    long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_ioctl && a1 >= 0 && a1 < MAX_FD_NUMBER && is_fake_fd[a1])
        return do_ioctl((int)a1, (unsigned long)a2, (void *)a3);
    return real_syscall(number, a1, a2, a3, a4, a5, a6);
}

static int check_mmap(int fd, size_t length, off_t offset) {
    pthread_mutex_lock(&lock);
    struct fake *f = lookup(fd);
    int rc = 0;
    if (f) {
        if (fd_state(f) == PLUG_UNPLUGGED)
            rc = ENODEV;
        else if (f->nbufs == 0 || offset < 0 || (size_t)offset % f->stride != 0 ||
                 (size_t)offset / f->stride >= (size_t)f->nbufs || length > f->stride)
            rc = EINVAL;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    ensure_init();
    if (fd >= 0 && fd < MAX_FD_NUMBER && is_fake_fd[fd]) {
        int rc = check_mmap(fd, length, offset);
        if (rc) {
            errno = rc;
            return MAP_FAILED;
        }
    }
    return real_mmap(addr, length, prot, flags, fd, offset);
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off64_t offset) {
    ensure_init();
    if (fd >= 0 && fd < MAX_FD_NUMBER && is_fake_fd[fd]) {
        int rc = check_mmap(fd, length, (off_t)offset);
        if (rc) {
            errno = rc;
            return MAP_FAILED;
        }
    }
    return real_mmap64(addr, length, prot, flags, fd, offset);
}

/* revents for one fake fd (caller holds the lock). */
static short fake_revents(struct fake *f, short events) {
    enum plug p = fd_state(f);
    if (p == PLUG_UNPLUGGED)
        return POLLERR | POLLHUP;
    if (!f->streaming)
        return POLLERR;
    advance(f, p);
    if (f->dlen > 0)
        return (short)(events & (POLLIN | POLLRDNORM));
    return 0;
}

int poll(struct pollfd *fds, nfds_t nfds, int timeout) {
    ensure_init();
    int any = 0;
    for (nfds_t i = 0; i < nfds; i++)
        if (fds[i].fd >= 0 && fds[i].fd < MAX_FD_NUMBER && is_fake_fd[fds[i].fd])
            any = 1;
    if (!any)
        return real_poll(fds, nfds, timeout);

    struct pollfd *tmp = calloc(nfds, sizeof *tmp);
    if (!tmp) {
        errno = ENOMEM;
        return -1;
    }
    uint64_t deadline = timeout < 0 ? UINT64_MAX : mono_ns() + (uint64_t)timeout * 1000000ull;
    int ready;
    for (;;) {
        ready = 0;
        int fake_ready = 0;
        pthread_mutex_lock(&lock);
        for (nfds_t i = 0; i < nfds; i++) {
            tmp[i] = fds[i];
            tmp[i].revents = 0;
            struct fake *f = lookup(fds[i].fd);
            if (f) {
                tmp[i].fd = -1; /* the kernel ignores negative fds */
                fds[i].revents = fake_revents(f, fds[i].events);
                if (fds[i].revents)
                    fake_ready++;
            }
        }
        pthread_mutex_unlock(&lock);
        uint64_t now = mono_ns();
        int wait_ms = 0;
        if (!fake_ready && now < deadline) {
            uint64_t left = deadline - now;
            wait_ms = left > 2000000ull ? 2 : (int)((left + 999999ull) / 1000000ull);
        }
        int rc = real_poll(tmp, nfds, wait_ms);
        if (rc < 0) {
            int e = errno;
            free(tmp);
            errno = e;
            return -1;
        }
        for (nfds_t i = 0; i < nfds; i++) {
            if (tmp[i].fd >= 0 || fds[i].fd < 0)
                fds[i].revents = tmp[i].revents;
            if (fds[i].revents)
                ready++;
        }
        if (ready > 0 || mono_ns() >= deadline)
            break;
    }
    free(tmp);
    return ready;
}
