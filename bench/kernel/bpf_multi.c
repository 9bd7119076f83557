#define _GNU_SOURCE
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <errno.h>
#define BPF_TRACE_UPROBE_MULTI 48
struct um { unsigned int prog_fd, target_fd, attach_type, flags; unsigned long path, offsets, ref, cookies; unsigned int cnt, uflags, pid; };
__asm__(".text\n.globl f_a\n.type f_a,@function\n.p2align 4\nf_a: push %rbx\n mov %rdi,%rax\n pop %rbx\n ret\n"
        ".globl f_b\n.type f_b,@function\n.p2align 4\nf_b: lea 1(%rdi),%rax\n ret\n");
long f_a(long); long f_b(long);
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
static unsigned long file_off(void *fn) {
  Dl_info info; dladdr(fn, &info);
  unsigned long a = (unsigned long)fn - (unsigned long)info.dli_fbase;
  ElfW(Ehdr)* eh = info.dli_fbase; ElfW(Phdr)* ph = (void*)((char*)eh + eh->e_phoff);
  for (int i=0;i<eh->e_phnum;i++) if (ph[i].p_type==PT_LOAD && a>=ph[i].p_vaddr && a<ph[i].p_vaddr+ph[i].p_memsz) return a - ph[i].p_vaddr + ph[i].p_offset;
  return a;
}
static long bpf(int cmd, union bpf_attr *a){ return syscall(SYS_bpf, cmd, a, sizeof *a); }
#define I(c,d,s,o,i) ((struct bpf_insn){c,d,s,o,i})
char path[4096];
int prog, rb; void *ring; unsigned long *cons, *prod; char *data; unsigned long mask;
int attach(unsigned long *offs, unsigned long *cookies, int n, int pid){
  union bpf_attr a; memset(&a,0,sizeof a); struct um *u=(struct um*)&a;
  u->prog_fd=prog; u->attach_type=BPF_TRACE_UPROBE_MULTI; u->path=(unsigned long)path; u->offsets=(unsigned long)offs; u->cookies=(unsigned long)cookies; u->cnt=n; u->pid=pid;
  int fd=bpf(BPF_LINK_CREATE,&a); if(fd<0){perror("link");exit(1);} return fd;
}
long drain(){ long n=0; unsigned long c=*cons, p=__atomic_load_n(prod,__ATOMIC_ACQUIRE);
  while(c<p){ unsigned int len=*(unsigned int*)(data+(c&mask)); if(len&(1u<<31)) break; unsigned int l=len&~(3u<<30);
    if(!(len&(1u<<30))) n++; c+=(l+8+7)&~7UL; }
  __atomic_store_n(cons,c,__ATOMIC_RELEASE); return n; }
void *body(void *p){ for(int i=0;i<10;i++) f_a(i); return 0; }
void *closer(void *p){ close((int)(long)p); return 0; }
int main(){
  readlink("/proc/self/exe", path, 4095);
  union bpf_attr a; memset(&a,0,sizeof a);
  a.map_type=BPF_MAP_TYPE_RINGBUF; a.max_entries=1<<20; rb=bpf(BPF_MAP_CREATE,&a); if(rb<0){perror("map");return 1;}
  struct bpf_insn insns[]={
    I(0xbf,6,1,0,0),            // r6 = r1
    I(0x85,0,0,0,14),           // pid_tgid
    I(0xbf,7,0,0,0),
    I(0xbf,1,6,0,0),
    I(0x85,0,0,0,174),          // cookie
    I(0xbf,8,0,0,0),
    I(0x85,0,0,0,5),            // ktime
    I(0xbf,9,0,0,0),
    I(0x18,1,1,0,rb), I(0,0,0,0,0),
    I(0xb7,2,0,0,40), I(0xb7,3,0,0,0),
    I(0x85,0,0,0,131),          // reserve
    I(0x15,0,0,8,0),            // if r0==0 goto +8
    I(0x7b,0,8,0,0), I(0x7b,0,7,8,0), I(0x7b,0,9,16,0),
    I(0x79,1,6,152,0), I(0x7b,0,1,24,0),
    I(0xbf,1,0,0,0), I(0xb7,2,0,0,0), I(0x85,0,0,0,132),
    I(0xb7,0,0,0,0), I(0x95,0,0,0,0),
  };
  char log[65536]; memset(&a,0,sizeof a);
  a.prog_type=BPF_PROG_TYPE_KPROBE; a.expected_attach_type=BPF_TRACE_UPROBE_MULTI; a.insns=(unsigned long)insns; a.insn_cnt=sizeof insns/sizeof insns[0];
  a.license=(unsigned long)"GPL"; a.log_buf=(unsigned long)log; a.log_size=sizeof log; a.log_level=1;
  prog=bpf(BPF_PROG_LOAD,&a); if(prog<0){perror("prog");puts(log);return 1;}
  long pg=4096; void *cp=mmap(0,pg,PROT_READ|PROT_WRITE,MAP_SHARED,rb,0); void *pp=mmap(0,pg+2*(1<<20),PROT_READ,MAP_SHARED,rb,pg);
  if(cp==MAP_FAILED||pp==MAP_FAILED){perror("mmap");return 1;}
  cons=cp; prod=pp; data=(char*)pp+pg; mask=(1<<20)-1;
  unsigned long oa=file_off(f_a), ob=file_off(f_b);
  // costs
  for (int k=0;k<2;k++){ long (*f)(long)= k? f_b : f_a; unsigned long off = k? ob: oa; unsigned long ret = k? 4 : 5;
    double t0=now(); for(int i=0;i<2000;i++) f(i); double bare=(now()-t0)/2000;
    unsigned long offs[1]={off}, ck[1]={1}; int l=attach(offs,ck,1,getpid());
    double best=1e9; for(int r=0;r<5;r++){ t0=now(); for(int i=0;i<2000;i++) f(i); double d=(now()-t0)/2000; if(d<best)best=d; drain(); }
    unsigned long offs2[1]={off+ret}; int l2=attach(offs2,ck,1,getpid());
    double best2=1e9; for(int r=0;r<5;r++){ t0=now(); for(int i=0;i<2000;i++) f(i); double d=(now()-t0)/2000; if(d<best2)best2=d; printf(" got %ld\n", drain()); }
    printf("%s entry %.0f ns/call, entry+ret %.0f\n", k?"lea":"push", (best-bare)*1e6, (best2-bare)*1e6);
    t0=now(); close(l2); close(l); printf("close 2 links: %.1f ms\n", now()-t0);
  }
  int links[40]; unsigned long offs[1]={oa}, ck[1]={1};
  double t0=now(); for(int i=0;i<40;i++) links[i]=attach(offs,ck,1,getpid()); printf("attach 40: %.1f ms\n", now()-t0);
  for (int k=0;k<3;k++){ double x=now(); pthread_t t; pthread_create(&t,0,body,0); pthread_join(t,0); printf("thread create+join %.2f ms, records %ld\n", now()-x, drain());}
  t0=now(); pthread_t th[40]; for(int i=0;i<40;i++) pthread_create(&th[i],0,closer,(void*)(long)links[i]); for(int i=0;i<40;i++) pthread_join(th[i],0);
  printf("close 40 in parallel: %.1f ms\n", now()-t0);
}
