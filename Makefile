# mx: an incoming SMTP feed in small cooperating programs.
# `make` builds everything, `make test` runs t/, `make run` starts the
# sample server, `make check-asan` runs the tests under ASan+UBSan.

PREFIX  ?= /usr/local
DESTDIR ?=
PORT    ?= 2525
BUILD   ?= build

PROGS   = mkcdb relaycheck smtpd-lite deliver ruleproc mxqueue mkauth
DEB_BUILD = libcdb-dev tinycdb libmilter-dev libbsd-dev libssl-dev libcrypt-dev pkg-config gcc make
DEB_TEST  = ucspi-tcp swaks python3 procps strace postfix dovecot-core dovecot-pop3d dovecot-imapd postgrey miltertest dnsmasq-base openssl libnet-ssleay-perl libio-socket-ssl-perl opendkim opendkim-tools clamav-daemon clamav-milter rspamd

PKGS_ALL  = libbsd-overlay libcdb
CC      ?= cc
WARN    = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
HARDEN  = -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
OPT     ?= -O2 -g
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) $(HARDEN) -Ilib \
	$(shell pkg-config --cflags $(PKGS_ALL) 2>/dev/null)
LDFLAGS_BASE = -pie -Wl,-z,relro -Wl,-z,now
# The small libraries (tinycdb, libbsd and its libmd, libmilter) are
# linked statically when their .a files are there: every message execs
# several of our programs, and each shared library costs the loader
# opens, mmaps, relocations and page faults (about 0.18 ms an exec on the
# bench machine, doc/PERFORMANCE.md). STATIC_LIBS=0 links them shared.
STATIC_LIBS ?= 1
LIBDIR_A := $(shell $(CC) -print-file-name=libcdb.a 2>/dev/null)
ifeq ($(STATIC_LIBS)$(if $(wildcard $(LIBDIR_A)),y,n),1y)
LIBS_BASE = -Wl,-Bstatic $(shell pkg-config --libs $(PKGS_ALL) 2>/dev/null) \
	$(if $(wildcard $(dir $(LIBDIR_A))libmd.a),-lmd) -Wl,-Bdynamic -lresolv
EXTRA_LIBS_ruleproc = -Wl,-Bstatic $(shell pkg-config --libs milter 2>/dev/null) -Wl,-Bdynamic -pthread
else
LIBS_BASE = $(shell pkg-config --libs $(PKGS_ALL) 2>/dev/null) -lresolv
EXTRA_LIBS_ruleproc = $(shell pkg-config --libs milter 2>/dev/null) -pthread
endif
ifeq ($(WERROR),1)
CFLAGS_BASE += -Werror
endif
ifeq ($(SANITIZE),1)
OPT = -O1 -g -fno-omit-frame-pointer
HARDEN = -fPIE
CFLAGS_BASE += -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDFLAGS_BASE += -fsanitize=address,undefined
BUILD = build-asan
endif

LIB_SRC = $(wildcard lib/*.c)
LIB_OBJ = $(patsubst lib/%.c,$(BUILD)/lib/%.o,$(LIB_SRC))
LIBA    = $(BUILD)/libmx.a

prog_src = $(wildcard $(1)/*.c)
prog_obj = $(patsubst %.c,$(BUILD)/%.o,$(call prog_src,$(1)))
# a program directory without sources yet builds nothing
BINS = $(foreach p,$(PROGS),$(if $(wildcard $(p)/*.c),$(BUILD)/bin/$(p)))

T_SRC = $(wildcard t/unit/*.c)
T_BIN = $(patsubst t/unit/%.c,$(BUILD)/t/%,$(T_SRC))

.PHONY: all deps test check-asan run install clean bench
all: deps-check $(BINS) $(T_BIN)

# Missing packages: installed when root, otherwise the command is printed.
deps-check:
	@sh t/helpers/deps.sh build $(DEB_BUILD)
deps:
	@sh t/helpers/deps.sh build $(DEB_BUILD)
	@sh t/helpers/deps.sh test $(DEB_TEST)

$(BUILD)/lib/%.o: lib/%.c $(wildcard lib/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -c -o $@ $<

$(LIBA): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c $(wildcard lib/*.h) $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(EXTRA_CFLAGS_$(firstword $(subst /, ,$*))) -c -o $@ $<

# ruleproc alone links libmilter and pthreads.
EXTRA_CFLAGS_ruleproc = $(shell pkg-config --cflags milter 2>/dev/null) -pthread
# smtpd-lite: TLS (OpenSSL) and crypt(3) for SMTP AUTH; mkauth: crypt(3).
EXTRA_CFLAGS_smtpd-lite = $(shell pkg-config --cflags openssl 2>/dev/null)
EXTRA_LIBS_smtpd-lite = $(shell pkg-config --libs openssl 2>/dev/null) -lcrypt
EXTRA_LIBS_mkauth = -lcrypt
# mxqueue: opportunistic STARTTLS as a client (OpenSSL).
EXTRA_CFLAGS_mxqueue = $(shell pkg-config --cflags openssl 2>/dev/null)
EXTRA_LIBS_mxqueue = $(shell pkg-config --libs openssl 2>/dev/null)

.SECONDARY:
.SECONDEXPANSION:
$(BUILD)/bin/%: $$(call prog_obj,%) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_BASE) -o $@ $(call prog_obj,$*) $(LIBA) $(LIBS_BASE) $(EXTRA_LIBS_$*)

$(BUILD)/t/%: t/unit/%.c $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(LDFLAGS_BASE) -o $@ $< $(LIBA) $(LIBS_BASE)

test: deps all
	@BUILD=$(BUILD) sh t/run

check-asan:
	$(MAKE) SANITIZE=1 all
	@BUILD=build-asan ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 sh t/run

run: deps-check all
	@sh t/make-run.sh $(BUILD) $(PORT)

bench: all
	@sh bench/run

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(wildcard doc/*.8) $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 $(wildcard doc/*.5) $(DESTDIR)$(PREFIX)/share/man/man5/

clean:
	rm -rf build build-asan run
