/* test_socket.h — socket helpers shared by the unit tests of the
 * rendezvous (test_launch_env.c) and the TCP communicator (test_comm_tcp.c). */
#ifndef RV_TEST_SOCKET_H
#define RV_TEST_SOCKET_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* A free port from the kernel (bound to 0 on 127.0.0.1, released): another
 * process may take it before the test binds it again, a small race the
 * tests accept. -1 on error. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

#endif
