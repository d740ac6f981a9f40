// A Node socket.io server for the idle-connection comparison of `marie-bench idle`: it
// accepts what the benchmark's client sends (a token in the CONNECT auth payload), answers
// with `connected` as MARIE and the bare socketioxide server do, and holds the connection.
// It prints `listening <addr>` and exits when its standard input closes (its parent went away).
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const http = createServer();
const io = new Server(http, { serveClient: false });

io.use((socket, next) => {
  const token = socket.handshake.auth?.token;
  if (typeof token !== 'string' || token === '') {
    next(new Error('unauthorized'));
    return;
  }
  socket.data.user = token;
  next();
});

io.on('connection', (socket) => {
  socket.on('join_conversation', (p) => {
    const conversation = String(p?.conversation_id ?? '');
    socket.join(conversation);
    socket.to(conversation).emit('user_joined', { user_id: socket.data.user, conversation_id: conversation });
    socket.emit('joined', { conversation_id: conversation, status: 'joined', members: [], created: true });
  });
  socket.emit('connected', { status: 'connected', sid: socket.id, user_id: socket.data.user, session: 'node' });
});

http.listen(0, '127.0.0.1', () => {
  console.log(`listening 127.0.0.1:${http.address().port}`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
