// berth-loopback's ADD and DEL without Node, for when the shim finds no daemon to serve it.
//
// Bringing `lo` up is the first call of every pod's network setup, and a Node start costs more
// than a whole reference plugin (~90 ms against ~4 ms on the project's VMs), so the shim does
// this one plugin's common calls itself. The TypeScript (plugin.ts, through the skeleton) stays
// the definition: this file takes only the calls whose every check it can make the same way (a
// config of cniVersion, name and type, plain ASCII everywhere, a namespace it can enter) and
// hands everything else, errors included, to it. A test runs both on the same inputs and
// compares their output byte for byte (test/integration/cni-plugins/loopback/fast-path.test.ts).
#define _GNU_SOURCE
#include "fast.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

// lib/cni/version.ts's supportedVersions from 0.3.0 on (0.1.0 and 0.2.0 results have another shape).
static const char *const versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
#define MAX_ADDRESSES 64

struct config {
  char version[8];
  int has_version, has_name, has_type;
};

// A byte the fast path passes through untouched: printable ASCII other than the two JSON
// escapes. Anything else (escapes, control or non-ASCII bytes) goes to the TypeScript.
static int plain(unsigned char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; }

static int plain_string(const char *s) {
  for (; *s; s++)
    if (!plain((unsigned char)*s)) return 0;
  return 1;
}

static const char *skip_space(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

// A JSON string without escapes at p; its bytes are [*start, *start + *len).
static const char *read_string(const char *p, const char *end, const char **start, size_t *len) {
  if (p >= end || *p != '"') return NULL;
  const char *s = ++p;
  while (p < end && plain((unsigned char)*p)) p++;
  if (p >= end || *p != '"') return NULL;
  *start = s;
  *len = (size_t)(p - s);
  return p + 1;
}

// The config, when it is one JSON object of the keys cniVersion, name and type, each a string,
// each at most once: what a runtime sends for a loopback entry of a network list.
static int parse_config(const char *p, size_t len, struct config *c) {
  const char *end = p + len;
  memset(c, 0, sizeof *c);
  p = skip_space(p, end);
  if (p >= end || *p++ != '{') return -1;
  p = skip_space(p, end);
  if (p < end && *p == '}') return skip_space(p + 1, end) == end ? 0 : -1;
  for (;;) {
    const char *key, *value;
    size_t key_len, value_len;
    if (!(p = read_string(p, end, &key, &key_len))) return -1;
    p = skip_space(p, end);
    if (p >= end || *p++ != ':') return -1;
    p = skip_space(p, end);
    if (!(p = read_string(p, end, &value, &value_len))) return -1;
    if (key_len == 10 && !memcmp(key, "cniVersion", 10) && !c->has_version) {
      if (value_len >= sizeof c->version) return -1;
      memcpy(c->version, value, value_len);
      c->has_version = 1;
    } else if (key_len == 4 && !memcmp(key, "name", 4) && !c->has_name) {
      c->has_name = value_len > 0 ? 1 : -1;
    } else if (key_len == 4 && !memcmp(key, "type", 4) && !c->has_type) {
      c->has_type = value_len > 0 ? 1 : -1;
    } else {
      return -1;
    }
    p = skip_space(p, end);
    if (p < end && *p == ',') {
      p = skip_space(p + 1, end);
      continue;
    }
    if (p < end && *p == '}') return skip_space(p + 1, end) == end ? 0 : -1;
    return -1;
  }
}

static int supported(const char *version) {
  for (size_t i = 0; i < sizeof versions / sizeof *versions; i++)
    if (!strcmp(version, versions[i])) return 1;
  return 0;
}

// The skeleton's checks of the environment, for values it would accept. Anything it would
// reject returns 0, and the TypeScript reports it.
static int environment_ok(int add) {
  const char *id = getenv("CNI_CONTAINERID"), *ifname = getenv("CNI_IFNAME");
  const char *netns = getenv("CNI_NETNS"), *args = getenv("CNI_ARGS");
  const char *level = getenv("BERTH_LOG_LEVEL");
  if (!id || !*id || !ifname || !*ifname) return 0;
  if (add && (!netns || !*netns)) return 0;
  if (netns && !plain_string(netns)) return 0;
  // A level that shows debug or info lines: the TypeScript writes them.
  if (level && (!strcmp(level, "debug") || !strcmp(level, "info"))) return 0;
  // CNI_CONTAINERID: [A-Za-z0-9][A-Za-z0-9_.-]*
  for (const char *p = id; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (!alnum && (p == id || (ch != '_' && ch != '.' && ch != '-'))) return 0;
  }
  // CNI_IFNAME: 1-15 bytes, not . or .., no '/', ':' or whitespace.
  size_t n = strlen(ifname);
  if (n > 15 || !strcmp(ifname, ".") || !strcmp(ifname, "..")) return 0;
  for (const char *p = ifname; *p; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f || *p == '/' || *p == ':') return 0;
  // CNI_ARGS: KEY=VALUE pairs separated by ';', empty pairs allowed.
  if (args) {
    for (const char *pair = args; *pair;) {
      const char *stop = strchr(pair, ';');
      size_t pair_len = stop ? (size_t)(stop - pair) : strlen(pair);
      const char *eq = memchr(pair, '=', pair_len);
      if (pair_len > 0 && (!eq || eq == pair)) return 0;
      pair += pair_len + (stop ? 1 : 0);
    }
  }
  return 1;
}

struct address {
  int v6;
  unsigned char bytes[16];
  unsigned prefix;
};

// The loopback addresses on interface `index`, IPv4 before IPv6 (the TypeScript lists them
// from a dump of all addresses and keeps 127.x and ::1). -1 on any netlink failure.
static int loopback_addresses(int index, struct address *out, int max) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -1;
  struct {
    struct nlmsghdr head;
    struct ifaddrmsg body;
  } req = {.head = {.nlmsg_len = sizeof req, .nlmsg_type = RTM_GETADDR, .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
           .body = {.ifa_family = AF_UNSPEC}};
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) return close(fd), -1;
  struct address v4[MAX_ADDRESSES], v6[MAX_ADDRESSES];
  int n4 = 0, n6 = 0, done = 0;
  static char buf[32768];
  while (!done) {
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return close(fd), -1;
    int left = (int)got;
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = 1;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) return close(fd), -1;
      if (h->nlmsg_type != RTM_NEWADDR) continue;
      struct ifaddrmsg *ifa = NLMSG_DATA(h);
      if ((int)ifa->ifa_index != index || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6)) continue;
      // IFA_LOCAL is the interface's own address; IPv6 sends only IFA_ADDRESS.
      const unsigned char *local = NULL, *address = NULL;
      int attr_len = (int)IFA_PAYLOAD(h);
      for (struct rtattr *a = IFA_RTA(ifa); RTA_OK(a, attr_len); a = RTA_NEXT(a, attr_len)) {
        size_t want = ifa->ifa_family == AF_INET ? 4 : 16;
        if (RTA_PAYLOAD(a) != want) continue;
        if (a->rta_type == IFA_LOCAL) local = RTA_DATA(a);
        if (a->rta_type == IFA_ADDRESS) address = RTA_DATA(a);
      }
      const unsigned char *raw = local ? local : address;
      if (!raw) continue;
      if (ifa->ifa_family == AF_INET && raw[0] == 127) {
        if (n4 == max) return close(fd), -1;
        v4[n4] = (struct address){.v6 = 0, .prefix = ifa->ifa_prefixlen};
        memcpy(v4[n4++].bytes, raw, 4);
      } else if (ifa->ifa_family == AF_INET6 && !memcmp(raw, &in6addr_loopback, 16)) {
        if (n6 == max) return close(fd), -1;
        v6[n6] = (struct address){.v6 = 1, .prefix = ifa->ifa_prefixlen};
        memcpy(v6[n6++].bytes, raw, 16);
      }
    }
  }
  close(fd);
  if (n4 + n6 > max) return -1;
  memcpy(out, v4, (size_t)n4 * sizeof *v4);
  memcpy(out + n4, v6, (size_t)n6 * sizeof *v6);
  return n4 + n6;
}

// The ADD result as the skeleton prints it: convertResult's keys and order for `version`.
static void print_result(const char *version, const char *netns, const struct address *a, int n) {
  int before10 = version[0] == '0';
  printf("{\"cniVersion\":\"%s\",\"interfaces\":[{\"name\":\"lo\",\"mac\":\"00:00:00:00:00:00\",\"sandbox\":\"%s\"}],\"ips\":[", version, netns);
  for (int i = 0; i < n; i++) {
    printf("%s{", i ? "," : "");
    if (before10) printf("\"version\":\"%c\",", a[i].v6 ? '6' : '4');
    if (a[i].v6) printf("\"address\":\"::1/%u\"", a[i].prefix);
    else printf("\"address\":\"%u.%u.%u.%u/%u\"", a[i].bytes[0], a[i].bytes[1], a[i].bytes[2], a[i].bytes[3], a[i].prefix);
    printf(",\"interface\":0}");
  }
  printf("],\"dns\":{}}\n");
}

// In the namespace already: bring lo up (ADD) or down (DEL) and, for ADD, list its addresses.
// 0 done, -1 not done (the TypeScript reports why), 1 DEL found no lo (nothing to do).
static int act(int add, struct address *addresses, int *count) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct ifreq ifr = {0};
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
    int gone = errno == ENODEV;
    close(fd);
    return !add && gone ? 1 : -1;
  }
  int up = (ifr.ifr_flags & IFF_UP) != 0;
  if (add != up) {
    ifr.ifr_flags = (short)(add ? ifr.ifr_flags | IFF_UP : ifr.ifr_flags & ~IFF_UP);
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0) return close(fd), -1;
  }
  if (add) {
    if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) return close(fd), -1;
    *count = loopback_addresses(ifr.ifr_ifindex, addresses, MAX_ADDRESSES);
  }
  close(fd);
  return add && *count < 0 ? -1 : 0;
}

int loopback_fast(const char *command, const char *input, size_t len) {
  int add = !strcmp(command, "ADD");
  if (!add && strcmp(command, "DEL")) return -1;
  struct config c;
  if (parse_config(input, len, &c) || c.has_version != 1 || c.has_name != 1 || c.has_type != 1) return -1;
  if (!supported(c.version) || !environment_ok(add)) return -1;

  const char *netns = getenv("CNI_NETNS");
  // DEL without a namespace, or of one that is gone, has nothing to do and succeeds.
  if (!add && (!netns || !*netns)) return 0;
  // O_NONBLOCK: a FIFO at that path must not hold the call (setns then refuses it).
  int target = open(netns, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (target < 0) return !add && errno == ENOENT ? 0 : -1;
  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) return close(target), -1;
  if (setns(target, CLONE_NEWNET) < 0) {
    close(target);
    close(home);
    return -1;
  }
  close(target);
  struct address addresses[MAX_ADDRESSES];
  int count = 0;
  int done = act(add, addresses, &count);
  if (done < 0) {
    // Back home, so the TypeScript starts where it would have.
    if (setns(home, CLONE_NEWNET) < 0) {
      printf("{\"cniVersion\":\"%s\",\"code\":999,\"msg\":\"berth-loopback: cannot return to the original network namespace: %s\"}\n", c.version, strerror(errno));
      exit(1);
    }
    close(home);
    return -1;
  }
  close(home);
  if (add) print_result(c.version, netns, addresses, count);
  if (fflush(stdout) != 0) exit(1);
  return 0;
}
