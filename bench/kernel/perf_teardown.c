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
#include <pthread.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
__asm__(".text\n.globl f_a\n.type f_a,@function\n.p2align 4\nf_a: push %rbx\n mov %rdi,%rax\n pop %rbx\n ret\n .p2align 4\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n nop\n ret\n");
long f_a(long);
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e3+t.tv_nsec/1e6;}
static unsigned long file_off(void *fn) {
  Dl_info info; dladdr(fn, &info);
  unsigned long a = (unsigned long)fn - (unsigned long)info.dli_fbase;
  ElfW(Ehdr)* eh = info.dli_fbase; ElfW(Phdr)* ph = (void*)((char*)eh + eh->e_phoff);
  for (int i=0;i<eh->e_phnum;i++) if (ph[i].p_type==PT_LOAD && a>=ph[i].p_vaddr && a<ph[i].p_vaddr+ph[i].p_memsz) return a - ph[i].p_vaddr + ph[i].p_offset;
  return a;
}
char path[4096]; int type; int inh;
int openp(unsigned long off, int cpu) {
  struct perf_event_attr a; memset(&a,0,sizeof a);
  a.size=sizeof a; a.type=type; a.config1=(unsigned long)path; a.config2=off; a.sample_period=1;
  a.sample_type=PERF_SAMPLE_TID; a.inherit=inh; 
  int fd = syscall(SYS_perf_event_open,&a,0,cpu,-1,PERF_FLAG_FD_CLOEXEC);
  if (fd<0){perror("open");exit(1);} return fd;
}
int fds[1000]; int nf;
void *closer(void *p){ close((int)(long)p); return 0; }
void *body(void *p){ return 0; }
int main(int argc,char**argv){
  type=8; readlink("/proc/self/exe", path, 4095);
  int N=atoi(argv[1]); int mode=atoi(argv[2]); inh = mode>=2;
  unsigned long off=file_off(f_a);
  double t0=now();
  for(int i=0;i<N;i++) fds[i]=openp(off + (i%40)+16, inh? 0 : -1);
  double t1=now();
  printf("open %d: %.1f ms\n",N,t1-t0);
  if (mode==2) { // thread create/join with inherited events
    for (int k=0;k<4;k++){ double a=now(); pthread_t t; pthread_create(&t,0,body,0); double b=now(); pthread_join(t,0); double c=now(); printf("create %.1f ms join %.1f ms\n", b-a, c-b);} 
  }
  t0=now();
  if (mode==0) for(int i=0;i<N;i++) close(fds[i]);
  else { pthread_t th[1000]; for(int i=0;i<N;i++) pthread_create(&th[i],0,closer,(void*)(long)fds[i]); for(int i=0;i<N;i++) pthread_join(th[i],0);} 
  printf("close %d (%s): %.1f ms\n",N,mode==0?"serial":"parallel",now()-t0);
}
