#define _GNU_SOURCE
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <elf.h>
#include <link.h>
#include <dlfcn.h>

__asm__(".text\n.globl f_push\n.type f_push,@function\n.p2align 4\nf_push: push %rbx\n mov %rdi,%rax\n pop %rbx\n ret\n"
        ".globl f_mov\n.type f_mov,@function\n.p2align 4\nf_mov: mov %rdi,%rax\n add $1,%rax\n ret\n"
        ".globl f_endbr\n.type f_endbr,@function\n.p2align 4\nf_endbr: endbr64\n mov %rdi,%rax\n ret\n"
        ".globl f_nop\n.type f_nop,@function\n.p2align 4\nf_nop: nop\n mov %rdi,%rax\n ret\n"
        ".globl f_sub\n.type f_sub,@function\n.p2align 4\nf_sub: sub $8,%rsp\n mov %rdi,%rax\n add $8,%rsp\n ret\n"
        ".globl f_lea\n.type f_lea,@function\n.p2align 4\nf_lea: lea 1(%rdi),%rax\n ret\n"
        ".globl f_pushrbp\n.type f_pushrbp,@function\n.p2align 4\nf_pushrbp: push %rbp\n mov %rsp,%rbp\n mov %rdi,%rax\n pop %rbp\n ret\n");
long f_push(long), f_mov(long), f_endbr(long), f_nop(long), f_sub(long), f_lea(long), f_pushrbp(long);

static unsigned long file_off(void *fn) {
  Dl_info info; struct link_map *lm; dladdr1(fn, &info, (void**)&lm, RTLD_DL_LINKMAP);
  unsigned long a = (unsigned long)fn - (unsigned long)info.dli_fbase;
  // for PIE main: vaddr == file offset typically in text? compute via phdrs
  ElfW(Ehdr)* eh = info.dli_fbase; ElfW(Phdr)* ph = (void*)((char*)eh + eh->e_phoff);
  for (int i=0;i<eh->e_phnum;i++) if (ph[i].p_type==PT_LOAD && a>=ph[i].p_vaddr && a<ph[i].p_vaddr+ph[i].p_memsz) return a - ph[i].p_vaddr + ph[i].p_offset;
  return a;
}
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
int type;
int openp(unsigned long off, int group) {
  struct perf_event_attr a; memset(&a,0,sizeof a);
  a.size=sizeof a; a.type=type; a.config=0; a.config1=(unsigned long)"/proc/self/exe"; 
  static char path[4096]; ssize_t n = readlink("/proc/self/exe", path, 4095); path[n]=0; a.config1=(unsigned long)path;
  a.config2=off; a.sample_period=1; a.sample_type=PERF_SAMPLE_IDENTIFIER|PERF_SAMPLE_TID|PERF_SAMPLE_TIME|PERF_SAMPLE_REGS_USER;
  a.sample_regs_user=1<<7; a.use_clockid=1; a.clockid=CLOCK_MONOTONIC;
  int fd = syscall(SYS_perf_event_open,&a,0,-1,-1,PERF_FLAG_FD_CLOEXEC);
  if (fd<0){perror("open");exit(1);}
  if (group>=0) ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, group);
  return fd;
}
int main(int argc,char**argv){
  type = atoi(argv[1]);
  long (*fns[])(long)={f_push,f_mov,f_endbr,f_nop,f_sub,f_lea,f_pushrbp};
  const char*names[]={"push","mov","endbr","nop","sub","lea","pushrbp"};
  int N=20000;
  for(int k=0;k<7;k++){
    long (*f)(long)=fns[k];
    volatile long s=0;
    double t0=now(); for(int i=0;i<N;i++) s+=f(i); double bare=(now()-t0)/N;
    int e=openp(file_off(f),-1);
    void*ring=mmap(0,4096*257,PROT_READ|PROT_WRITE,MAP_SHARED,e,0);
    if(ring==MAP_FAILED){perror("mmap");return 1;}
    struct perf_event_mmap_page*mp=ring;
    double best=1e18;
    for(int r=0;r<5;r++){ t0=now(); for(int i=0;i<2000;i++) s+=f(i); double d=(now()-t0)/2000; if(d<best)best=d; mp->data_tail=mp->data_head;}
    // find ret offset: last byte 0xc3 within 16
    unsigned char*p=(unsigned char*)f; int ro=0; while(p[ro]!=0xc3) ro++;
    int x=openp(file_off(f)+ro,e);
    double best2=1e18;
    for(int r=0;r<5;r++){ t0=now(); for(int i=0;i<2000;i++) s+=f(i); double d=(now()-t0)/2000; if(d<best2)best2=d; mp->data_tail=mp->data_head;}
    printf("%-8s bare %.1f entry %.0f ns  entry+ret %.0f ns (ret %.0f)\n",names[k],bare,best-bare,best2-bare,best2-best);
    close(x);munmap(ring,4096*257);close(e);
  }
}
