/* @marie-rs/client 0.1.0 (with socket.io-client 4.8.4): the chat page's MARIE client, global `Marie`. Built by `npm run build:page` in clients/js; do not edit. */
"use strict";var Marie=(()=>{var __defProp=Object.defineProperty;var __getOwnPropDesc=Object.getOwnPropertyDescriptor;var __getOwnPropNames=Object.getOwnPropertyNames;var __hasOwnProp=Object.prototype.hasOwnProperty;var __export=(target,all)=>{for(var name in all)__defProp(target,name,{get:all[name],enumerable:!0})},__copyProps=(to,from,except,desc)=>{if(from&&typeof from==
"object"||typeof from=="function")for(let key of __getOwnPropNames(from))!__hasOwnProp.call(to,key)&&key!==except&&__defProp(to,key,{get:()=>from[key],enumerable:!(desc=
__getOwnPropDesc(from,key))||desc.enumerable});return to};var __toCommonJS=mod=>__copyProps(__defProp({},"__esModule",{value:!0}),mod);var page_exports={};__export(page_exports,{AnswerTracker:()=>AnswerTracker,Conversation:()=>Conversation,ConversationList:()=>ConversationList,MarieClient:()=>MarieClient,
MarieError:()=>MarieError,Store:()=>Store,UIChunkMapper:()=>UIChunkMapper,applyEvent:()=>applyEvent,io:()=>lookup2,isMarieError:()=>isMarieError,partsFromWire:()=>partsFromWire,
randomId:()=>randomId,reasoningOf:()=>reasoningOf,textOf:()=>textOf,waitFor:()=>waitFor});var PACKET_TYPES=Object.create(null);PACKET_TYPES.open="0";PACKET_TYPES.close="1";PACKET_TYPES.ping="2";PACKET_TYPES.pong="3";PACKET_TYPES.message="4";PACKET_TYPES.
upgrade="5";PACKET_TYPES.noop="6";var PACKET_TYPES_REVERSE=Object.create(null);Object.keys(PACKET_TYPES).forEach(key=>{PACKET_TYPES_REVERSE[PACKET_TYPES[key]]=key});
var ERROR_PACKET={type:"error",data:"parser error"};var withNativeBlob=typeof Blob=="function"||typeof Blob<"u"&&Object.prototype.toString.call(Blob)==="[object BlobConstructor]",withNativeArrayBuffer=typeof ArrayBuffer==
"function",isView=obj=>typeof ArrayBuffer.isView=="function"?ArrayBuffer.isView(obj):obj&&obj.buffer instanceof ArrayBuffer,encodePacket=({type,data},supportsBinary,callback)=>withNativeBlob&&
data instanceof Blob?supportsBinary?callback(data):encodeBlobAsBase64(data,callback):withNativeArrayBuffer&&(data instanceof ArrayBuffer||isView(data))?supportsBinary?
callback(data):encodeBlobAsBase64(new Blob([data]),callback):callback(PACKET_TYPES[type]+(data||"")),encodeBlobAsBase64=(data,callback)=>{let fileReader=new FileReader;
return fileReader.onload=function(){let content=fileReader.result.split(",")[1];callback("b"+(content||""))},fileReader.readAsDataURL(data)};function toArray(data){
return data instanceof Uint8Array?data:data instanceof ArrayBuffer?new Uint8Array(data):new Uint8Array(data.buffer,data.byteOffset,data.byteLength)}var TEXT_ENCODER;
function encodePacketToBinary(packet,callback){if(withNativeBlob&&packet.data instanceof Blob)return packet.data.arrayBuffer().then(toArray).then(callback);if(withNativeArrayBuffer&&
(packet.data instanceof ArrayBuffer||isView(packet.data)))return callback(toArray(packet.data));encodePacket(packet,!1,encoded=>{TEXT_ENCODER||(TEXT_ENCODER=new TextEncoder),
callback(TEXT_ENCODER.encode(encoded))})}var chars="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",lookup=typeof Uint8Array>"u"?[]:new Uint8Array(256);for(let i=0;i<chars.length;i++)
lookup[chars.charCodeAt(i)]=i;var decode=base64=>{let bufferLength=base64.length*.75,len=base64.length,i,p=0,encoded1,encoded2,encoded3,encoded4;base64[base64.length-1]==="="&&(bufferLength--,
base64[base64.length-2]==="="&&bufferLength--);let arraybuffer=new ArrayBuffer(bufferLength),bytes=new Uint8Array(arraybuffer);for(i=0;i<len;i+=4)encoded1=lookup[base64.
charCodeAt(i)],encoded2=lookup[base64.charCodeAt(i+1)],encoded3=lookup[base64.charCodeAt(i+2)],encoded4=lookup[base64.charCodeAt(i+3)],bytes[p++]=encoded1<<2|encoded2>>
4,bytes[p++]=(encoded2&15)<<4|encoded3>>2,bytes[p++]=(encoded3&3)<<6|encoded4&63;return arraybuffer};var withNativeArrayBuffer2=typeof ArrayBuffer=="function",decodePacket=(encodedPacket,binaryType)=>{if(typeof encodedPacket!="string")return{type:"message",data:mapBinary(
encodedPacket,binaryType)};let type=encodedPacket.charAt(0);return type==="b"?{type:"message",data:decodeBase64Packet(encodedPacket.substring(1),binaryType)}:PACKET_TYPES_REVERSE[type]?
encodedPacket.length>1?{type:PACKET_TYPES_REVERSE[type],data:encodedPacket.substring(1)}:{type:PACKET_TYPES_REVERSE[type]}:ERROR_PACKET},decodeBase64Packet=(data,binaryType)=>{
if(withNativeArrayBuffer2){let decoded=decode(data);return mapBinary(decoded,binaryType)}else return{base64:!0,data}},mapBinary=(data,binaryType)=>binaryType===
"blob"?data instanceof Blob?data:new Blob([data]):data instanceof ArrayBuffer?data:data.buffer;var SEPARATOR="",encodePayload=(packets,callback)=>{let length=packets.length,encodedPackets=new Array(length),count=0;packets.forEach((packet,i)=>{encodePacket(
packet,!1,encodedPacket=>{encodedPackets[i]=encodedPacket,++count===length&&callback(encodedPackets.join(SEPARATOR))})})},decodePayload=(encodedPayload,binaryType)=>{
let encodedPackets=encodedPayload.split(SEPARATOR),packets=[];for(let i=0;i<encodedPackets.length;i++){let decodedPacket=decodePacket(encodedPackets[i],binaryType);
if(packets.push(decodedPacket),decodedPacket.type==="error")break}return packets};function createPacketEncoderStream(){return new TransformStream({transform(packet,controller){
encodePacketToBinary(packet,encodedPacket=>{let payloadLength=encodedPacket.length,header;if(payloadLength<126)header=new Uint8Array(1),new DataView(header.buffer).
setUint8(0,payloadLength);else if(payloadLength<65536){header=new Uint8Array(3);let view=new DataView(header.buffer);view.setUint8(0,126),view.setUint16(1,payloadLength)}else{
header=new Uint8Array(9);let view=new DataView(header.buffer);view.setUint8(0,127),view.setBigUint64(1,BigInt(payloadLength))}packet.data&&typeof packet.data!="\
string"&&(header[0]|=128),controller.enqueue(header),controller.enqueue(encodedPacket)})}})}var TEXT_DECODER;function totalLength(chunks){return chunks.reduce((acc,chunk)=>acc+
chunk.length,0)}function concatChunks(chunks,size){if(chunks[0].length===size)return chunks.shift();let buffer=new Uint8Array(size),j=0;for(let i=0;i<size;i++)buffer[i]=
chunks[0][j++],j===chunks[0].length&&(chunks.shift(),j=0);return chunks.length&&j<chunks[0].length&&(chunks[0]=chunks[0].slice(j)),buffer}function createPacketDecoderStream(maxPayload,binaryType){
TEXT_DECODER||(TEXT_DECODER=new TextDecoder);let chunks=[],state=0,expectedLength=-1,isBinary2=!1;return new TransformStream({transform(chunk,controller){for(chunks.
push(chunk);;){if(state===0){if(totalLength(chunks)<1)break;let header=concatChunks(chunks,1);isBinary2=(header[0]&128)===128,expectedLength=header[0]&127,expectedLength<
126?state=3:expectedLength===126?state=1:state=2}else if(state===1){if(totalLength(chunks)<2)break;let headerArray=concatChunks(chunks,2);expectedLength=new DataView(
headerArray.buffer,headerArray.byteOffset,headerArray.length).getUint16(0),state=3}else if(state===2){if(totalLength(chunks)<8)break;let headerArray=concatChunks(
chunks,8),view=new DataView(headerArray.buffer,headerArray.byteOffset,headerArray.length),n=view.getUint32(0);if(n>Math.pow(2,21)-1){controller.enqueue(ERROR_PACKET);
break}expectedLength=n*Math.pow(2,32)+view.getUint32(4),state=3}else{if(totalLength(chunks)<expectedLength)break;let data=concatChunks(chunks,expectedLength);controller.
enqueue(decodePacket(isBinary2?data:TEXT_DECODER.decode(data),binaryType)),state=0}if(expectedLength===0||expectedLength>maxPayload){controller.enqueue(ERROR_PACKET);
break}}}})}var protocol=4;function Emitter(obj){if(obj)return mixin(obj)}function mixin(obj){for(var key in Emitter.prototype)obj[key]=Emitter.prototype[key];return obj}Emitter.prototype.
on=Emitter.prototype.addEventListener=function(event,fn){return this._callbacks=this._callbacks||{},(this._callbacks["$"+event]=this._callbacks["$"+event]||[]).
push(fn),this};Emitter.prototype.once=function(event,fn){function on2(){this.off(event,on2),fn.apply(this,arguments)}return on2.fn=fn,this.on(event,on2),this};Emitter.
prototype.off=Emitter.prototype.removeListener=Emitter.prototype.removeAllListeners=Emitter.prototype.removeEventListener=function(event,fn){if(this._callbacks=
this._callbacks||{},arguments.length==0)return this._callbacks={},this;var callbacks=this._callbacks["$"+event];if(!callbacks)return this;if(arguments.length==1)
return delete this._callbacks["$"+event],this;for(var cb,i=0;i<callbacks.length;i++)if(cb=callbacks[i],cb===fn||cb.fn===fn){callbacks.splice(i,1);break}return callbacks.
length===0&&delete this._callbacks["$"+event],this};Emitter.prototype.emit=function(event){this._callbacks=this._callbacks||{};for(var args=new Array(arguments.
length-1),callbacks=this._callbacks["$"+event],i=1;i<arguments.length;i++)args[i-1]=arguments[i];if(callbacks){callbacks=callbacks.slice(0);for(var i=0,len=callbacks.
length;i<len;++i)callbacks[i].apply(this,args)}return this};Emitter.prototype.emitReserved=Emitter.prototype.emit;Emitter.prototype.listeners=function(event){return this.
_callbacks=this._callbacks||{},this._callbacks["$"+event]||[]};Emitter.prototype.hasListeners=function(event){return!!this.listeners(event).length};var nextTick=typeof Promise=="function"&&typeof Promise.resolve=="function"?cb=>Promise.resolve().then(cb):(cb,setTimeoutFn)=>setTimeoutFn(cb,0),globalThisShim=typeof self<
"u"?self:typeof window<"u"?window:Function("return this")(),defaultBinaryType="arraybuffer";function pick(obj,...attr){return attr.reduce((acc,k)=>(obj.hasOwnProperty(k)&&(acc[k]=obj[k]),acc),{})}var NATIVE_SET_TIMEOUT=globalThisShim.setTimeout,NATIVE_CLEAR_TIMEOUT=globalThisShim.
clearTimeout;function installTimerFunctions(obj,opts){opts.useNativeTimers?(obj.setTimeoutFn=NATIVE_SET_TIMEOUT.bind(globalThisShim),obj.clearTimeoutFn=NATIVE_CLEAR_TIMEOUT.
bind(globalThisShim)):(obj.setTimeoutFn=globalThisShim.setTimeout.bind(globalThisShim),obj.clearTimeoutFn=globalThisShim.clearTimeout.bind(globalThisShim))}var BASE64_OVERHEAD=1.33;
function byteLength(obj){return typeof obj=="string"?utf8Length(obj):Math.ceil((obj.byteLength||obj.size)*BASE64_OVERHEAD)}function utf8Length(str){let c=0,length=0;
for(let i=0,l=str.length;i<l;i++)c=str.charCodeAt(i),c<128?length+=1:c<2048?length+=2:c<55296||c>=57344?length+=3:(i++,length+=4);return length}function randomString(){
return Date.now().toString(36).substring(3)+Math.random().toString(36).substring(2,5)}function encode(obj){let str="";for(let i in obj)obj.hasOwnProperty(i)&&(str.length&&(str+="&"),str+=encodeURIComponent(i)+"="+encodeURIComponent(obj[i]));return str}
function decode2(qs){let qry={},pairs=qs.split("&");for(let i=0,l=pairs.length;i<l;i++){let pair=pairs[i].split("=");qry[decodeURIComponent(pair[0])]=decodeURIComponent(
pair.slice(1).join("="))}return qry}var TransportError=class extends Error{constructor(reason,description,context){super(reason),this.description=description,this.context=context,this.type="Transp\
ortError"}},Transport=class extends Emitter{constructor(opts){super(),this.writable=!1,installTimerFunctions(this,opts),this.opts=opts,this.query=opts.query,this.
socket=opts.socket,this.supportsBinary=!opts.forceBase64}onError(reason,description,context){return super.emitReserved("error",new TransportError(reason,description,
context)),this}open(){return this.readyState="opening",this.doOpen(),this}close(){return(this.readyState==="opening"||this.readyState==="open")&&(this.doClose(),
this.onClose()),this}send(packets){this.readyState==="open"&&this.write(packets)}onOpen(){this.readyState="open",this.writable=!0,super.emitReserved("open")}onData(data){
let packet=decodePacket(data,this.socket.binaryType);this.onPacket(packet)}onPacket(packet){super.emitReserved("packet",packet)}onClose(details){this.readyState=
"closed",super.emitReserved("close",details)}pause(onPause){}createUri(schema,query={}){return schema+"://"+this._hostname()+this._port()+this.opts.path+this._query(
query)}_hostname(){let hostname=this.opts.hostname;return hostname.indexOf(":")===-1?hostname:"["+hostname+"]"}_port(){return this.opts.port&&(this.opts.secure&&
Number(this.opts.port)!==443||!this.opts.secure&&Number(this.opts.port)!==80)?":"+this.opts.port:""}_query(query){let encodedQuery=encode(query);return encodedQuery.
length?"?"+encodedQuery:""}};var Polling=class extends Transport{constructor(){super(...arguments),this._polling=!1}get name(){return"polling"}doOpen(){this._poll()}pause(onPause){this.readyState=
"pausing";let pause=()=>{this.readyState="paused",onPause()};if(this._polling||!this.writable){let total=0;this._polling&&(total++,this.once("pollComplete",function(){
--total||pause()})),this.writable||(total++,this.once("drain",function(){--total||pause()}))}else pause()}_poll(){this._polling=!0,this.doPoll(),this.emitReserved(
"poll")}onData(data){let callback=packet=>{if(this.readyState==="opening"&&packet.type==="open"&&this.onOpen(),packet.type==="close")return this.onClose({description:"\
transport closed by the server"}),!1;this.onPacket(packet)};decodePayload(data,this.socket.binaryType).forEach(callback),this.readyState!=="closed"&&(this._polling=
!1,this.emitReserved("pollComplete"),this.readyState==="open"&&this._poll())}doClose(){let close=()=>{this.write([{type:"close"}])};this.readyState==="open"?close():
this.once("open",close)}write(packets){this.writable=!1,encodePayload(packets,data=>{this.doWrite(data,()=>{this.writable=!0,this.emitReserved("drain")})})}uri(){
let schema=this.opts.secure?"https":"http",query=this.query||{};return this.opts.timestampRequests!==!1&&(query[this.opts.timestampParam]=randomString()),!this.
supportsBinary&&!query.sid&&(query.b64=1),this.createUri(schema,query)}};var value=!1;try{value=typeof XMLHttpRequest<"u"&&"withCredentials"in new XMLHttpRequest}catch{}var hasCORS=value;function empty(){}var BaseXHR=class extends Polling{constructor(opts){if(super(opts),typeof location<"u"){let isSSL=location.protocol==="https:",port=location.port;
port||(port=isSSL?"443":"80"),this.xd=typeof location<"u"&&opts.hostname!==location.hostname||port!==opts.port}}doWrite(data,fn){let req=this.request({method:"P\
OST",data});req.on("success",fn),req.on("error",(xhrStatus,context)=>{this.onError("xhr post error",xhrStatus,context)})}doPoll(){let req=this.request();req.on(
"data",this.onData.bind(this)),req.on("error",(xhrStatus,context)=>{this.onError("xhr poll error",xhrStatus,context)}),this.pollXhr=req}},Request=class _Request extends Emitter{constructor(createRequest,uri,opts){
super(),this.createRequest=createRequest,installTimerFunctions(this,opts),this._opts=opts,this._method=opts.method||"GET",this._uri=uri,this._data=opts.data!==void 0?
opts.data:null,this._create()}_create(){var _a;let opts=pick(this._opts,"agent","pfx","key","passphrase","cert","ca","ciphers","rejectUnauthorized","autoUnref");
opts.xdomain=!!this._opts.xd;let xhr=this._xhr=this.createRequest(opts);try{xhr.open(this._method,this._uri,!0);try{if(this._opts.extraHeaders){xhr.setDisableHeaderCheck&&
xhr.setDisableHeaderCheck(!0);for(let i in this._opts.extraHeaders)this._opts.extraHeaders.hasOwnProperty(i)&&xhr.setRequestHeader(i,this._opts.extraHeaders[i])}}catch{}
if(this._method==="POST")try{xhr.setRequestHeader("Content-type","text/plain;charset=UTF-8")}catch{}try{xhr.setRequestHeader("Accept","*/*")}catch{}(_a=this._opts.
cookieJar)===null||_a===void 0||_a.addCookies(xhr),"withCredentials"in xhr&&(xhr.withCredentials=this._opts.withCredentials),this._opts.requestTimeout&&(xhr.timeout=
this._opts.requestTimeout),xhr.onreadystatechange=()=>{var _a2;xhr.readyState===3&&((_a2=this._opts.cookieJar)===null||_a2===void 0||_a2.parseCookies(xhr.getResponseHeader(
"set-cookie"))),xhr.readyState===4&&(xhr.status===200||xhr.status===1223?this._onLoad():this.setTimeoutFn(()=>{this._onError(typeof xhr.status=="number"?xhr.status:
0)},0))},xhr.send(this._data)}catch(e){this.setTimeoutFn(()=>{this._onError(e)},0);return}typeof document<"u"&&(this._index=_Request.requestsCount++,_Request.requests[this.
_index]=this)}_onError(err){this.emitReserved("error",err,this._xhr),this._cleanup(!0)}_cleanup(fromError){if(!(typeof this._xhr>"u"||this._xhr===null)){if(this.
_xhr.onreadystatechange=empty,fromError)try{this._xhr.abort()}catch{}typeof document<"u"&&delete _Request.requests[this._index],this._xhr=null}}_onLoad(){let data=this.
_xhr.responseText;data!==null&&(this.emitReserved("data",data),this.emitReserved("success"),this._cleanup())}abort(){this._cleanup()}};Request.requestsCount=0;Request.
requests={};if(typeof document<"u"){if(typeof attachEvent=="function")attachEvent("onunload",unloadHandler);else if(typeof addEventListener=="function"){let terminationEvent="\
onpagehide"in globalThisShim?"pagehide":"unload";addEventListener(terminationEvent,unloadHandler,!1)}}function unloadHandler(){for(let i in Request.requests)Request.
requests.hasOwnProperty(i)&&Request.requests[i].abort()}var hasXHR2=(function(){let xhr=newRequest({xdomain:!1});return xhr&&xhr.responseType!==null})(),XHR=class extends BaseXHR{constructor(opts){
super(opts);let forceBase64=opts&&opts.forceBase64;this.supportsBinary=hasXHR2&&!forceBase64}request(opts={}){return Object.assign(opts,{xd:this.xd},this.opts),
new Request(newRequest,this.uri(),opts)}};function newRequest(opts){let xdomain=opts.xdomain;try{if(typeof XMLHttpRequest<"u"&&(!xdomain||hasCORS))return new XMLHttpRequest}catch{}
if(!xdomain)try{return new globalThisShim[["Active"].concat("Object").join("X")]("Microsoft.XMLHTTP")}catch{}}var isReactNative=typeof navigator<"u"&&typeof navigator.product=="string"&&navigator.product.toLowerCase()==="reactnative",BaseWS=class extends Transport{get name(){
return"websocket"}doOpen(){let uri=this.uri(),protocols=this.opts.protocols,opts=isReactNative?{}:pick(this.opts,"agent","perMessageDeflate","pfx","key","passph\
rase","cert","ca","ciphers","rejectUnauthorized","localAddress","protocolVersion","origin","maxPayload","family","checkServerIdentity");this.opts.extraHeaders&&
(opts.headers=this.opts.extraHeaders);try{this.ws=this.createSocket(uri,protocols,opts)}catch(err){return this.emitReserved("error",err)}this.ws.binaryType=this.
socket.binaryType,this.addEventListeners()}addEventListeners(){this.ws.onopen=()=>{this.opts.autoUnref&&this.ws._socket.unref(),this.onOpen()},this.ws.onclose=closeEvent=>this.
onClose({description:"websocket connection closed",context:closeEvent}),this.ws.onmessage=ev=>this.onData(ev.data),this.ws.onerror=e=>this.onError("websocket er\
ror",e)}write(packets){this.writable=!1;for(let i=0;i<packets.length;i++){let packet=packets[i],lastPacket=i===packets.length-1;encodePacket(packet,this.supportsBinary,
data=>{try{this.doWrite(packet,data)}catch{}lastPacket&&nextTick(()=>{this.writable=!0,this.emitReserved("drain")},this.setTimeoutFn)})}}doClose(){typeof this.ws<
"u"&&(this.ws.onerror=()=>{},this.ws.close(),this.ws=null)}uri(){let schema=this.opts.secure?"wss":"ws",query=this.query||{};return this.opts.timestampRequests&&
(query[this.opts.timestampParam]=randomString()),this.supportsBinary||(query.b64=1),this.createUri(schema,query)}},WebSocketCtor=globalThisShim.WebSocket||globalThisShim.
MozWebSocket,WS=class extends BaseWS{createSocket(uri,protocols,opts){return isReactNative?new WebSocketCtor(uri,protocols,opts):protocols?new WebSocketCtor(uri,
protocols):new WebSocketCtor(uri)}doWrite(_packet,data){this.ws.send(data)}};var WT=class extends Transport{get name(){return"webtransport"}doOpen(){try{this._transport=new WebTransport(this.createUri("https"),this.opts.transportOptions[this.
name])}catch(err){return this.emitReserved("error",err)}this._transport.closed.then(()=>{this.onClose()}).catch(err=>{this.onError("webtransport error",err)}),this.
_transport.ready.then(()=>{this._transport.createBidirectionalStream().then(stream=>{let decoderStream=createPacketDecoderStream(Number.MAX_SAFE_INTEGER,this.socket.
binaryType),reader=stream.readable.pipeThrough(decoderStream).getReader(),encoderStream=createPacketEncoderStream();encoderStream.readable.pipeTo(stream.writable),
this._writer=encoderStream.writable.getWriter();let read=()=>{reader.read().then(({done,value:value2})=>{done||(this.onPacket(value2),read())}).catch(err=>{})};
read();let packet={type:"open"};this.query.sid&&(packet.data=`{"sid":"${this.query.sid}"}`),this._writer.write(packet).then(()=>this.onOpen())})})}write(packets){
this.writable=!1;for(let i=0;i<packets.length;i++){let packet=packets[i],lastPacket=i===packets.length-1;this._writer.write(packet).then(()=>{lastPacket&&nextTick(
()=>{this.writable=!0,this.emitReserved("drain")},this.setTimeoutFn)})}}doClose(){var _a;(_a=this._transport)===null||_a===void 0||_a.close()}};var transports={websocket:WS,webtransport:WT,polling:XHR};var re=/^(?:(?![^:@\/?#]+:[^:@\/]*@)(http|https|ws|wss):\/\/)?((?:(([^:@\/?#]*)(?::([^:@\/?#]*))?)?@)?((?:[a-f0-9]{0,4}:){2,7}[a-f0-9]{0,4}|[^:\/?#]*)(?::(\d*))?)(((\/(?:[^?#](?![^?#\/]*\.[^?#\/.]+(?:[?#]|$)))*\/?)?([^?#\/]*))(?:\?([^#]*))?(?:#(.*))?)/,
parts=["source","protocol","authority","userInfo","user","password","host","port","relative","path","directory","file","query","anchor"];function parse(str){if(str.
length>8e3)throw"URI too long";let src=str,b=str.indexOf("["),e=str.indexOf("]");b!=-1&&e!=-1&&(str=str.substring(0,b)+str.substring(b,e).replace(/:/g,";")+str.
substring(e,str.length));let m=re.exec(str||""),uri={},i=14;for(;i--;)uri[parts[i]]=m[i]||"";return b!=-1&&e!=-1&&(uri.source=src,uri.host=uri.host.substring(1,
uri.host.length-1).replace(/;/g,":"),uri.authority=uri.authority.replace("[","").replace("]","").replace(/;/g,":"),uri.ipv6uri=!0),uri.pathNames=pathNames(uri,uri.
path),uri.queryKey=queryKey(uri,uri.query),uri}function pathNames(obj,path){let regx=/\/{2,9}/g,names=path.replace(regx,"/").split("/");return(path.slice(0,1)==
"/"||path.length===0)&&names.splice(0,1),path.slice(-1)=="/"&&names.splice(names.length-1,1),names}function queryKey(uri,query){let data={};return query.replace(
/(?:^|&)([^&=]*)=?([^&]*)/g,function($0,$1,$2){$1&&(data[$1]=$2)}),data}var withEventListeners=typeof addEventListener=="function"&&typeof removeEventListener=="function",OFFLINE_EVENT_LISTENERS=[];withEventListeners&&addEventListener(
"offline",()=>{OFFLINE_EVENT_LISTENERS.forEach(listener=>listener())},!1);var Socket=class _Socket extends Emitter{constructor(uri,opts={}){var _a,_b;if(super(),
this.binaryType=defaultBinaryType,this.writeBuffer=[],this._prevBufferLen=0,this._upgrades=[],this._pingInterval=-1,this._pingTimeout=-1,this._maxPayload=-1,this.
_pingTimeoutTime=1/0,uri&&typeof uri=="object"&&(opts=uri,uri=null),uri){let parsedUri=parse(uri);opts.hostname=parsedUri.host,opts.secure=parsedUri.protocol===
"https"||parsedUri.protocol==="wss",opts.port=parsedUri.port,parsedUri.query&&(opts.query=parsedUri.query)}else opts.host&&(opts.hostname=parse(opts.host).host);
if(installTimerFunctions(this,opts),this.secure=opts.secure!=null?opts.secure:typeof location<"u"&&location.protocol==="https:",opts.hostname&&!opts.port&&(opts.
port=this.secure?"443":"80"),this.hostname=opts.hostname||(typeof location<"u"?location.hostname:"localhost"),this.port=opts.port||(typeof location<"u"&&location.
port?location.port:this.secure?"443":"80"),opts.transportImplementations&&opts.transports)throw new Error("specifying both 'transportImplementations' and 'trans\
ports' options is not supported");opts.transportImplementations||!((_a=opts.transports)===null||_a===void 0)&&_a.length&&typeof opts.transports[0]=="function"?(this.
transports=[],this._transportsByName=Object.create(null),((_b=opts.transportImplementations)!==null&&_b!==void 0?_b:opts.transports).forEach(t=>{let transportName=t.
prototype.name;this.transports.push(transportName),this._transportsByName[transportName]=t})):(this.transports=opts.transports?[...opts.transports]:["polling","\
websocket","webtransport"],this._transportsByName=transports),this.opts=Object.assign({path:"/engine.io",agent:!1,withCredentials:!1,upgrade:!0,timestampParam:"\
t",rememberUpgrade:!1,addTrailingSlash:!0,rejectUnauthorized:!0,perMessageDeflate:{threshold:1024},transportOptions:{},closeOnBeforeunload:!1},opts),this.opts.path=
this.opts.path.replace(/\/$/,"")+(this.opts.addTrailingSlash?"/":""),typeof this.opts.query=="string"&&(this.opts.query=decode2(this.opts.query)),withEventListeners&&
(this.opts.closeOnBeforeunload&&(this._beforeunloadEventListener=()=>{this.transport&&(this.transport.removeAllListeners(),this.transport.close())},addEventListener(
"beforeunload",this._beforeunloadEventListener,!1)),this.hostname!=="localhost"&&(this._offlineEventListener=()=>{this._onClose("transport close",{description:"\
network connection lost"})},OFFLINE_EVENT_LISTENERS.push(this._offlineEventListener))),this.opts.withCredentials&&(this._cookieJar=void 0),this._open()}createTransport(name){
let query=Object.assign({},this.opts.query);query.EIO=protocol,query.transport=name,this.id&&(query.sid=this.id);let opts=Object.assign({},this.opts,{query,socket:this,
hostname:this.hostname,secure:this.secure,port:this.port},this.opts.transportOptions[name]);return new this._transportsByName[name](opts)}_open(){if(this.transports.
length===0){this.setTimeoutFn(()=>{this.emitReserved("error","No transports available")},0);return}let transportName=this.opts.rememberUpgrade&&_Socket.priorWebsocketSuccess&&
this.transports.indexOf("websocket")!==-1?"websocket":this.transports[0];this.readyState="opening";let transport=this.createTransport(transportName);transport.open(),
this.setTransport(transport)}setTransport(transport){this.transport&&this.transport.removeAllListeners(),this.transport=transport,transport.on("drain",this._onDrain.
bind(this)).on("packet",this._onPacket.bind(this)).on("error",this._onError.bind(this)).on("close",reason=>this._onClose("transport close",reason))}_probe(name){
let transport=this.createTransport(name),failed=!1;_Socket.priorWebsocketSuccess=!1;let onTransportOpen=()=>{failed||(transport.send([{type:"ping",data:"probe"}]),
transport.once("packet",msg=>{if(!failed)if(msg.type==="pong"&&msg.data==="probe"){if(this.upgrading=!0,this.emitReserved("upgrading",transport),!transport)return;
_Socket.priorWebsocketSuccess=transport.name==="websocket",this.transport.pause(()=>{failed||this.readyState!=="closed"&&(cleanup(),this.setTransport(transport),
transport.send([{type:"upgrade"}]),this.emitReserved("upgrade",transport),transport=null,this.upgrading=!1,this.flush())})}else{let err=new Error("probe error");
err.transport=transport.name,this.emitReserved("upgradeError",err)}}))};function freezeTransport(){failed||(failed=!0,cleanup(),transport.close(),transport=null)}
let onerror=err=>{let error=new Error("probe error: "+err);error.transport=transport.name,freezeTransport(),this.emitReserved("upgradeError",error)};function onTransportClose(){
onerror("transport closed")}function onclose(){onerror("socket closed")}function onupgrade(to){transport&&to.name!==transport.name&&freezeTransport()}let cleanup=()=>{
transport.removeListener("open",onTransportOpen),transport.removeListener("error",onerror),transport.removeListener("close",onTransportClose),this.off("close",onclose),
this.off("upgrading",onupgrade)};transport.once("open",onTransportOpen),transport.once("error",onerror),transport.once("close",onTransportClose),this.once("clos\
e",onclose),this.once("upgrading",onupgrade),this._upgrades.indexOf("webtransport")!==-1&&name!=="webtransport"?this.setTimeoutFn(()=>{failed||transport.open()},
200):transport.open()}onOpen(){if(this.readyState="open",_Socket.priorWebsocketSuccess=this.transport.name==="websocket",this.emitReserved("open"),this.flush(),
this.readyState==="open"&&this.opts.upgrade)for(let i=0;i<this._upgrades.length;i++)this._probe(this._upgrades[i])}_onPacket(packet){if(this.readyState==="openi\
ng"||this.readyState==="open"||this.readyState==="closing")switch(this.emitReserved("packet",packet),this.emitReserved("heartbeat"),packet.type){case"open":this.
onHandshake(JSON.parse(packet.data));break;case"ping":this._sendPacket("pong"),this.emitReserved("ping"),this.emitReserved("pong"),this._resetPingTimeout();break;case"\
error":let err=new Error("server error");err.code=packet.data,this._onError(err);break;case"message":this.emitReserved("data",packet.data),this.emitReserved("me\
ssage",packet.data);break}}onHandshake(data){this.emitReserved("handshake",data),this.id=data.sid,this.transport.query.sid=data.sid,this._upgrades=this._filterUpgrades(
data.upgrades),this._pingInterval=data.pingInterval,this._pingTimeout=data.pingTimeout,this._maxPayload=data.maxPayload,this.onOpen(),this.readyState!=="closed"&&
this._resetPingTimeout()}_resetPingTimeout(){this.clearTimeoutFn(this._pingTimeoutTimer);let delay=this._pingInterval+this._pingTimeout;this._pingTimeoutTime=Date.
now()+delay,this._pingTimeoutTimer=this.setTimeoutFn(()=>{this._onClose("ping timeout")},delay),this.opts.autoUnref&&this._pingTimeoutTimer.unref()}_onDrain(){this.
writeBuffer.splice(0,this._prevBufferLen),this._prevBufferLen=0,this.writeBuffer.length===0?this.emitReserved("drain"):this.flush()}flush(){if(this.readyState!==
"closed"&&this.transport.writable&&!this.upgrading&&this.writeBuffer.length){let packets=this._getWritablePackets();this.transport.send(packets),this._prevBufferLen=
packets.length,this.emitReserved("flush")}}_getWritablePackets(){if(!(this._maxPayload&&this.transport.name==="polling"&&this.writeBuffer.length>1))return this.
writeBuffer;let payloadSize=1;for(let i=0;i<this.writeBuffer.length;i++){let data=this.writeBuffer[i].data;if(data&&(payloadSize+=byteLength(data)),i>0&&payloadSize>
this._maxPayload)return this.writeBuffer.slice(0,i);payloadSize+=2}return this.writeBuffer}_hasPingExpired(){if(!this._pingTimeoutTime)return!0;let hasExpired=Date.
now()>this._pingTimeoutTime;return hasExpired&&(this._pingTimeoutTime=0,nextTick(()=>{this._onClose("ping timeout")},this.setTimeoutFn)),hasExpired}write(msg,options,fn){
return this._sendPacket("message",msg,options,fn),this}send(msg,options,fn){return this._sendPacket("message",msg,options,fn),this}_sendPacket(type,data,options,fn){
if(typeof data=="function"&&(fn=data,data=void 0),typeof options=="function"&&(fn=options,options=null),this.readyState==="closing"||this.readyState==="closed")
return;options=options||{},options.compress=options.compress!==!1;let packet={type,data,options};this.emitReserved("packetCreate",packet),this.writeBuffer.push(
packet),fn&&this.once("flush",fn),this.flush()}close(){let close=()=>{this._onClose("forced close"),this.transport.close()},cleanupAndClose=()=>{this.off("upgra\
de",cleanupAndClose),this.off("upgradeError",cleanupAndClose),close()},waitForUpgrade=()=>{this.once("upgrade",cleanupAndClose),this.once("upgradeError",cleanupAndClose)};
return(this.readyState==="opening"||this.readyState==="open")&&(this.readyState="closing",this.writeBuffer.length?this.once("drain",()=>{this.upgrading?waitForUpgrade():
close()}):this.upgrading?waitForUpgrade():close()),this}_onError(err){if(_Socket.priorWebsocketSuccess=!1,this.opts.tryAllTransports&&this.transports.length>1&&
this.readyState==="opening")return this.transports.shift(),this._open();this.emitReserved("error",err),this._onClose("transport error",err)}_onClose(reason,description){
if(this.readyState==="opening"||this.readyState==="open"||this.readyState==="closing"){if(this.clearTimeoutFn(this._pingTimeoutTimer),this.transport.removeAllListeners(
"close"),this.transport.close(),this.transport.removeAllListeners(),withEventListeners&&(this._beforeunloadEventListener&&removeEventListener("beforeunload",this.
_beforeunloadEventListener,!1),this._offlineEventListener)){let i=OFFLINE_EVENT_LISTENERS.indexOf(this._offlineEventListener);i!==-1&&OFFLINE_EVENT_LISTENERS.splice(
i,1)}this.readyState="closed",this.id=null,this.emitReserved("close",reason,description),this.writeBuffer=[],this._prevBufferLen=0}}_filterUpgrades(upgrades){let filteredUpgrades=[];
for(let i=0;i<upgrades.length;i++)~this.transports.indexOf(upgrades[i])&&filteredUpgrades.push(upgrades[i]);return filteredUpgrades}};Socket.protocol=protocol;var protocol2=Socket.protocol;function url(uri,path="",loc){let obj=uri;loc=loc||typeof location<"u"&&location,uri==null&&(uri=loc.protocol+"//"+loc.host),typeof uri=="string"&&(uri.charAt(0)===
"/"&&(uri.charAt(1)==="/"?uri=loc.protocol+uri:uri=loc.host+uri),/^(https?|wss?):\/\//.test(uri)||(typeof loc<"u"?uri=loc.protocol+"//"+uri:uri="https://"+uri),
obj=parse(uri)),obj.port||(/^(http|ws)$/.test(obj.protocol)?obj.port="80":/^(http|ws)s$/.test(obj.protocol)&&(obj.port="443")),obj.path=obj.path||"/";let host=obj.
host.indexOf(":")!==-1?"["+obj.host+"]":obj.host;return obj.id=obj.protocol+"://"+host+":"+obj.port+path,obj.href=obj.protocol+"://"+host+(loc&&loc.port===obj.port?
"":":"+obj.port),obj}var esm_exports={};__export(esm_exports,{Decoder:()=>Decoder,Encoder:()=>Encoder,PacketType:()=>PacketType,isPacketValid:()=>isPacketValid,protocol:()=>protocol3});var withNativeArrayBuffer3=typeof ArrayBuffer=="function",isView2=obj=>typeof ArrayBuffer.isView=="function"?ArrayBuffer.isView(obj):obj.buffer instanceof ArrayBuffer,
toString=Object.prototype.toString,withNativeBlob2=typeof Blob=="function"||typeof Blob<"u"&&toString.call(Blob)==="[object BlobConstructor]",withNativeFile=typeof File==
"function"||typeof File<"u"&&toString.call(File)==="[object FileConstructor]";function isBinary(obj){return withNativeArrayBuffer3&&(obj instanceof ArrayBuffer||
isView2(obj))||withNativeBlob2&&obj instanceof Blob||withNativeFile&&obj instanceof File}function hasBinary(obj,toJSON){if(!obj||typeof obj!="object")return!1;if(Array.
isArray(obj)){for(let i=0,l=obj.length;i<l;i++)if(hasBinary(obj[i]))return!0;return!1}if(isBinary(obj))return!0;if(obj.toJSON&&typeof obj.toJSON=="function"&&arguments.
length===1)return hasBinary(obj.toJSON(),!0);for(let key in obj)if(Object.prototype.hasOwnProperty.call(obj,key)&&hasBinary(obj[key]))return!0;return!1}function deconstructPacket(packet){let buffers=[],packetData=packet.data,pack=packet;return pack.data=_deconstructPacket(packetData,buffers),pack.attachments=buffers.
length,{packet:pack,buffers}}function _deconstructPacket(data,buffers,toJSON){if(!data)return data;if(isBinary(data)){let placeholder={_placeholder:!0,num:buffers.
length};return buffers.push(data),placeholder}else if(Array.isArray(data)){let newData=new Array(data.length);for(let i=0;i<data.length;i++)newData[i]=_deconstructPacket(
data[i],buffers);return newData}else if(typeof data=="object"&&!(data instanceof Date)){if(data.toJSON&&typeof data.toJSON=="function"&&!toJSON)return _deconstructPacket(
data.toJSON(),buffers,!0);let newData={};for(let key in data)Object.prototype.hasOwnProperty.call(data,key)&&(newData[key]=_deconstructPacket(data[key],buffers));
return newData}return data}function reconstructPacket(packet,buffers){return packet.data=_reconstructPacket(packet.data,buffers),delete packet.attachments,packet}
function _reconstructPacket(data,buffers){if(!data)return data;if(data&&data._placeholder===!0){if(typeof data.num=="number"&&data.num>=0&&data.num<buffers.length)
return buffers[data.num];throw new Error("illegal attachments")}else if(Array.isArray(data))for(let i=0;i<data.length;i++)data[i]=_reconstructPacket(data[i],buffers);else if(typeof data==
"object")for(let key in data)Object.prototype.hasOwnProperty.call(data,key)&&(data[key]=_reconstructPacket(data[key],buffers));return data}var RESERVED_EVENTS=["connect","connect_error","disconnect","disconnecting","newListener","removeListener"],protocol3=5,PacketType;(function(PacketType2){PacketType2[PacketType2.
CONNECT=0]="CONNECT",PacketType2[PacketType2.DISCONNECT=1]="DISCONNECT",PacketType2[PacketType2.EVENT=2]="EVENT",PacketType2[PacketType2.ACK=3]="ACK",PacketType2[PacketType2.
CONNECT_ERROR=4]="CONNECT_ERROR",PacketType2[PacketType2.BINARY_EVENT=5]="BINARY_EVENT",PacketType2[PacketType2.BINARY_ACK=6]="BINARY_ACK"})(PacketType||(PacketType=
{}));var Encoder=class{constructor(replacer){this.replacer=replacer}encode(obj){return(obj.type===PacketType.EVENT||obj.type===PacketType.ACK)&&hasBinary(obj)?this.
encodeAsBinary({type:obj.type===PacketType.EVENT?PacketType.BINARY_EVENT:PacketType.BINARY_ACK,nsp:obj.nsp,data:obj.data,id:obj.id}):[this.encodeAsString(obj)]}encodeAsString(obj){
let str=""+obj.type;return(obj.type===PacketType.BINARY_EVENT||obj.type===PacketType.BINARY_ACK)&&(str+=obj.attachments+"-"),obj.nsp&&obj.nsp!=="/"&&(str+=obj.nsp+
","),obj.id!=null&&(str+=obj.id),obj.data!=null&&(str+=JSON.stringify(obj.data,this.replacer)),str}encodeAsBinary(obj){let deconstruction=deconstructPacket(obj),
pack=this.encodeAsString(deconstruction.packet),buffers=deconstruction.buffers;return buffers.unshift(pack),buffers}},Decoder=class _Decoder extends Emitter{constructor(opts){
super(),this.opts=Object.assign({reviver:void 0,maxAttachments:10},typeof opts=="function"?{reviver:opts}:opts)}add(obj){let packet;if(typeof obj=="string"){if(this.
reconstructor)throw new Error("got plaintext data when reconstructing a packet");packet=this.decodeString(obj);let isBinaryEvent=packet.type===PacketType.BINARY_EVENT;
isBinaryEvent||packet.type===PacketType.BINARY_ACK?(packet.type=isBinaryEvent?PacketType.EVENT:PacketType.ACK,this.reconstructor=new BinaryReconstructor(packet)):
super.emitReserved("decoded",packet)}else if(isBinary(obj)||obj.base64)if(this.reconstructor)packet=this.reconstructor.takeBinaryData(obj),packet&&(this.reconstructor=
null,super.emitReserved("decoded",packet));else throw new Error("got binary data when not reconstructing a packet");else throw new Error("Unknown type: "+obj)}decodeString(str){
let i=0,p={type:Number(str.charAt(0))};if(PacketType[p.type]===void 0)throw new Error("unknown packet type "+p.type);if(p.type===PacketType.BINARY_EVENT||p.type===
PacketType.BINARY_ACK){let start=i+1;for(;str.charAt(++i)!=="-"&&i!=str.length;);let buf=str.substring(start,i);if(buf!=Number(buf)||str.charAt(i)!=="-")throw new Error(
"Illegal attachments");let n=Number(buf);if(!isInteger(n)||n<1)throw new Error("Illegal attachments");if(n>this.opts.maxAttachments)throw new Error("too many at\
tachments");p.attachments=n}if(str.charAt(i+1)==="/"){let start=i+1;for(;++i&&!(str.charAt(i)===","||i===str.length););p.nsp=str.substring(start,i)}else p.nsp="\
/";let next=str.charAt(i+1);if(next!==""&&Number(next)==next){let start=i+1;for(;++i;){let c=str.charAt(i);if(c==null||Number(c)!=c){--i;break}if(i===str.length)
break}p.id=Number(str.substring(start,i+1))}if(str.charAt(++i)){let payload=this.tryParse(str.substr(i));if(_Decoder.isPayloadValid(p.type,payload))p.data=payload;else
throw new Error("invalid payload")}return p}tryParse(str){try{return JSON.parse(str,this.opts.reviver)}catch{return!1}}static isPayloadValid(type,payload){switch(type){case PacketType.
CONNECT:return isObject(payload);case PacketType.DISCONNECT:return payload===void 0;case PacketType.CONNECT_ERROR:return typeof payload=="string"||isObject(payload);case PacketType.
EVENT:case PacketType.BINARY_EVENT:return Array.isArray(payload)&&(typeof payload[0]=="number"||typeof payload[0]=="string"&&RESERVED_EVENTS.indexOf(payload[0])===
-1);case PacketType.ACK:case PacketType.BINARY_ACK:return Array.isArray(payload)}}destroy(){this.reconstructor&&(this.reconstructor.finishedReconstruction(),this.
reconstructor=null)}},BinaryReconstructor=class{constructor(packet){this.packet=packet,this.buffers=[],this.reconPack=packet}takeBinaryData(binData){if(this.buffers.
push(binData),this.buffers.length===this.reconPack.attachments){let packet=reconstructPacket(this.reconPack,this.buffers);return this.finishedReconstruction(),packet}
return null}finishedReconstruction(){this.reconPack=null,this.buffers=[]}};function isNamespaceValid(nsp){return typeof nsp=="string"}var isInteger=Number.isInteger||
function(value2){return typeof value2=="number"&&isFinite(value2)&&Math.floor(value2)===value2};function isAckIdValid(id){return id===void 0||isInteger(id)}function isObject(value2){
return Object.prototype.toString.call(value2)==="[object Object]"}function isDataValid(type,payload){switch(type){case PacketType.CONNECT:return payload===void 0||
isObject(payload);case PacketType.DISCONNECT:return payload===void 0;case PacketType.EVENT:return Array.isArray(payload)&&(typeof payload[0]=="number"||typeof payload[0]==
"string"&&RESERVED_EVENTS.indexOf(payload[0])===-1);case PacketType.ACK:return Array.isArray(payload);case PacketType.CONNECT_ERROR:return typeof payload=="stri\
ng"||isObject(payload);default:return!1}}function isPacketValid(packet){return isNamespaceValid(packet.nsp)&&isAckIdValid(packet.id)&&isDataValid(packet.type,packet.
data)}function on(obj,ev,fn){return obj.on(ev,fn),function(){obj.off(ev,fn)}}var RESERVED_EVENTS2=Object.freeze({connect:1,connect_error:1,disconnect:1,disconnecting:1,newListener:1,removeListener:1}),Socket2=class extends Emitter{constructor(io,nsp,opts){
super(),this.connected=!1,this.recovered=!1,this.receiveBuffer=[],this.sendBuffer=[],this._queue=[],this._queueSeq=0,this.ids=0,this.acks={},this.flags={},this.
io=io,this.nsp=nsp,opts&&opts.auth&&(this.auth=opts.auth),this._opts=Object.assign({},opts),this.io._autoConnect&&this.open()}get disconnected(){return!this.connected}subEvents(){
if(this.subs)return;let io=this.io;this.subs=[on(io,"open",this.onopen.bind(this)),on(io,"packet",this.onpacket.bind(this)),on(io,"error",this.onerror.bind(this)),
on(io,"close",this.onclose.bind(this))]}get active(){return!!this.subs}connect(){return this.connected?this:(this.subEvents(),this.io._reconnecting||this.io.open(),
this.io._readyState==="open"&&this.onopen(),this)}open(){return this.connect()}send(...args){return args.unshift("message"),this.emit.apply(this,args),this}emit(ev,...args){
var _a,_b,_c;if(RESERVED_EVENTS2.hasOwnProperty(ev))throw new Error('"'+ev.toString()+'" is a reserved event name');if(args.unshift(ev),this._opts.retries&&!this.
flags.fromQueue&&!this.flags.volatile)return this._addToQueue(args),this;let packet={type:PacketType.EVENT,data:args};if(packet.options={},packet.options.compress=
this.flags.compress!==!1,typeof args[args.length-1]=="function"){let id=this.ids++,ack=args.pop();this._registerAckCallback(id,ack),packet.id=id}let isTransportWritable=(_b=
(_a=this.io.engine)===null||_a===void 0?void 0:_a.transport)===null||_b===void 0?void 0:_b.writable,isConnected=this.connected&&!(!((_c=this.io.engine)===null||
_c===void 0)&&_c._hasPingExpired());return this.flags.volatile&&!isTransportWritable||(isConnected?(this.notifyOutgoingListeners(packet),this.packet(packet)):this.
sendBuffer.push(packet)),this.flags={},this}_registerAckCallback(id,ack){var _a;let timeout=(_a=this.flags.timeout)!==null&&_a!==void 0?_a:this._opts.ackTimeout;
if(timeout===void 0){this.acks[id]=ack;return}let timer=this.io.setTimeoutFn(()=>{delete this.acks[id];for(let i=0;i<this.sendBuffer.length;i++)this.sendBuffer[i].
id===id&&this.sendBuffer.splice(i,1);ack.call(this,new Error("operation has timed out"))},timeout),fn=(...args)=>{this.io.clearTimeoutFn(timer),ack.apply(this,args)};
fn.withError=!0,this.acks[id]=fn}emitWithAck(ev,...args){return new Promise((resolve,reject)=>{let fn=(arg1,arg2)=>arg1?reject(arg1):resolve(arg2);fn.withError=
!0,args.push(fn),this.emit(ev,...args)})}_addToQueue(args){let ack;typeof args[args.length-1]=="function"&&(ack=args.pop());let packet={id:this._queueSeq++,tryCount:0,
pending:!1,args,flags:Object.assign({fromQueue:!0},this.flags)};args.push((err,...responseArgs)=>(this._queue[0],err!==null?packet.tryCount>this._opts.retries&&
(this._queue.shift(),ack&&ack(err)):(this._queue.shift(),ack&&ack(null,...responseArgs)),packet.pending=!1,this._drainQueue())),this._queue.push(packet),this._drainQueue()}_drainQueue(force=!1){
if(!this.connected||this._queue.length===0)return;let packet=this._queue[0];packet.pending&&!force||(packet.pending=!0,packet.tryCount++,this.flags=packet.flags,
this.emit.apply(this,packet.args))}packet(packet){packet.nsp=this.nsp,this.io._packet(packet)}onopen(){typeof this.auth=="function"?this.auth(data=>{this._sendConnectPacket(
data)}):this._sendConnectPacket(this.auth)}_sendConnectPacket(data){this.packet({type:PacketType.CONNECT,data:this._pid?Object.assign({pid:this._pid,offset:this.
_lastOffset},data):data})}onerror(err){this.connected||this.emitReserved("connect_error",err)}onclose(reason,description){this.connected=!1,delete this.id,this.
emitReserved("disconnect",reason,description),this._clearAcks()}_clearAcks(){Object.keys(this.acks).forEach(id=>{if(!this.sendBuffer.some(packet=>String(packet.
id)===id)){let ack=this.acks[id];delete this.acks[id],ack.withError&&ack.call(this,new Error("socket has been disconnected"))}})}onpacket(packet){if(packet.nsp===
this.nsp)switch(packet.type){case PacketType.CONNECT:packet.data&&packet.data.sid?this.onconnect(packet.data.sid,packet.data.pid):this.emitReserved("connect_err\
or",new Error("It seems you are trying to reach a Socket.IO server in v2.x with a v3.x client, but they are not compatible (more information here: https://socke\
t.io/docs/v3/migrating-from-2-x-to-3-0/)"));break;case PacketType.EVENT:case PacketType.BINARY_EVENT:this.onevent(packet);break;case PacketType.ACK:case PacketType.
BINARY_ACK:this.onack(packet);break;case PacketType.DISCONNECT:this.ondisconnect();break;case PacketType.CONNECT_ERROR:this.destroy();let err=new Error(packet.data.
message);err.data=packet.data.data,this.emitReserved("connect_error",err);break}}onevent(packet){let args=packet.data||[];packet.id!=null&&args.push(this.ack(packet.
id)),this.connected?this.emitEvent(args):this.receiveBuffer.push(Object.freeze(args))}emitEvent(args){if(this._anyListeners&&this._anyListeners.length){let listeners=this.
_anyListeners.slice();for(let listener of listeners)listener.apply(this,args)}super.emit.apply(this,args),this._pid&&args.length&&typeof args[args.length-1]=="s\
tring"&&(this._lastOffset=args[args.length-1])}ack(id){let self2=this,sent=!1;return function(...args){sent||(sent=!0,self2.packet({type:PacketType.ACK,id,data:args}))}}onack(packet){
let ack=this.acks[packet.id];typeof ack=="function"&&(delete this.acks[packet.id],ack.withError&&packet.data.unshift(null),ack.apply(this,packet.data))}onconnect(id,pid){
this.id=id,this.recovered=pid&&this._pid===pid,this._pid=pid,this.connected=!0,this.emitBuffered(),this._drainQueue(!0),this.emitReserved("connect")}emitBuffered(){
this.receiveBuffer.forEach(args=>this.emitEvent(args)),this.receiveBuffer=[],this.sendBuffer.forEach(packet=>{this.notifyOutgoingListeners(packet),this.packet(packet)}),
this.sendBuffer=[]}ondisconnect(){this.destroy(),this.onclose("io server disconnect")}destroy(){this.subs&&(this.subs.forEach(subDestroy=>subDestroy()),this.subs=
void 0),this.io._destroy(this)}disconnect(){return this.connected&&this.packet({type:PacketType.DISCONNECT}),this.destroy(),this.connected&&this.onclose("io cli\
ent disconnect"),this}close(){return this.disconnect()}compress(compress){return this.flags.compress=compress,this}get volatile(){return this.flags.volatile=!0,
this}timeout(timeout){return this.flags.timeout=timeout,this}onAny(listener){return this._anyListeners=this._anyListeners||[],this._anyListeners.push(listener),
this}prependAny(listener){return this._anyListeners=this._anyListeners||[],this._anyListeners.unshift(listener),this}offAny(listener){if(!this._anyListeners)return this;
if(listener){let listeners=this._anyListeners;for(let i=0;i<listeners.length;i++)if(listener===listeners[i])return listeners.splice(i,1),this}else this._anyListeners=
[];return this}listenersAny(){return this._anyListeners||[]}onAnyOutgoing(listener){return this._anyOutgoingListeners=this._anyOutgoingListeners||[],this._anyOutgoingListeners.
push(listener),this}prependAnyOutgoing(listener){return this._anyOutgoingListeners=this._anyOutgoingListeners||[],this._anyOutgoingListeners.unshift(listener),this}offAnyOutgoing(listener){
if(!this._anyOutgoingListeners)return this;if(listener){let listeners=this._anyOutgoingListeners;for(let i=0;i<listeners.length;i++)if(listener===listeners[i])return listeners.
splice(i,1),this}else this._anyOutgoingListeners=[];return this}listenersAnyOutgoing(){return this._anyOutgoingListeners||[]}notifyOutgoingListeners(packet){if(this.
_anyOutgoingListeners&&this._anyOutgoingListeners.length){let listeners=this._anyOutgoingListeners.slice();for(let listener of listeners)listener.apply(this,packet.
data)}}};function Backoff(opts){opts=opts||{},this.ms=opts.min||100,this.max=opts.max||1e4,this.factor=opts.factor||2,this.jitter=opts.jitter>0&&opts.jitter<=1?opts.jitter:
0,this.attempts=0}Backoff.prototype.duration=function(){var ms=this.ms*Math.pow(this.factor,this.attempts++);if(this.jitter){var rand=Math.random(),deviation=Math.
floor(rand*this.jitter*ms);ms=(Math.floor(rand*10)&1)==0?ms-deviation:ms+deviation}return Math.min(ms,this.max)|0};Backoff.prototype.reset=function(){this.attempts=
0};Backoff.prototype.setMin=function(min){this.ms=min};Backoff.prototype.setMax=function(max){this.max=max};Backoff.prototype.setJitter=function(jitter){this.jitter=
jitter};var Manager=class extends Emitter{constructor(uri,opts){var _a;super(),this.nsps={},this.subs=[],uri&&typeof uri=="object"&&(opts=uri,uri=void 0),opts=opts||{},
opts.path=opts.path||"/socket.io",this.opts=opts,installTimerFunctions(this,opts),this.reconnection(opts.reconnection!==!1),this.reconnectionAttempts(opts.reconnectionAttempts||
1/0),this.reconnectionDelay(opts.reconnectionDelay||1e3),this.reconnectionDelayMax(opts.reconnectionDelayMax||5e3),this.randomizationFactor((_a=opts.randomizationFactor)!==
null&&_a!==void 0?_a:.5),this.backoff=new Backoff({min:this.reconnectionDelay(),max:this.reconnectionDelayMax(),jitter:this.randomizationFactor()}),this.timeout(
opts.timeout==null?2e4:opts.timeout),this._readyState="closed",this.uri=uri;let _parser=opts.parser||esm_exports;this.encoder=new _parser.Encoder,this.decoder=new _parser.
Decoder,this._autoConnect=opts.autoConnect!==!1,this._autoConnect&&this.open()}reconnection(v){return arguments.length?(this._reconnection=!!v,v||(this.skipReconnect=
!0),this):this._reconnection}reconnectionAttempts(v){return v===void 0?this._reconnectionAttempts:(this._reconnectionAttempts=v,this)}reconnectionDelay(v){var _a;
return v===void 0?this._reconnectionDelay:(this._reconnectionDelay=v,(_a=this.backoff)===null||_a===void 0||_a.setMin(v),this)}randomizationFactor(v){var _a;return v===
void 0?this._randomizationFactor:(this._randomizationFactor=v,(_a=this.backoff)===null||_a===void 0||_a.setJitter(v),this)}reconnectionDelayMax(v){var _a;return v===
void 0?this._reconnectionDelayMax:(this._reconnectionDelayMax=v,(_a=this.backoff)===null||_a===void 0||_a.setMax(v),this)}timeout(v){return arguments.length?(this.
_timeout=v,this):this._timeout}maybeReconnectOnOpen(){!this._reconnecting&&this._reconnection&&this.backoff.attempts===0&&this.reconnect()}open(fn){if(~this._readyState.
indexOf("open"))return this;this.engine=new Socket(this.uri,this.opts);let socket=this.engine,self2=this;this._readyState="opening",this.skipReconnect=!1;let openSubDestroy=on(
socket,"open",function(){self2.onopen(),fn&&fn()}),onError=err=>{this.cleanup(),this._readyState="closed",this.emitReserved("error",err),fn?fn(err):this.maybeReconnectOnOpen()},
errorSub=on(socket,"error",onError);if(this._timeout!==!1){let timeout=this._timeout,timer=this.setTimeoutFn(()=>{openSubDestroy(),onError(new Error("timeout")),
socket.close()},timeout);this.opts.autoUnref&&timer.unref(),this.subs.push(()=>{this.clearTimeoutFn(timer)})}return this.subs.push(openSubDestroy),this.subs.push(
errorSub),this}connect(fn){return this.open(fn)}onopen(){this.cleanup(),this._readyState="open",this.emitReserved("open");let socket=this.engine;this.subs.push(
on(socket,"ping",this.onping.bind(this)),on(socket,"data",this.ondata.bind(this)),on(socket,"error",this.onerror.bind(this)),on(socket,"close",this.onclose.bind(
this)),on(this.decoder,"decoded",this.ondecoded.bind(this)))}onping(){this.emitReserved("ping")}ondata(data){try{this.decoder.add(data)}catch(e){this.onclose("p\
arse error",e)}}ondecoded(packet){nextTick(()=>{this.emitReserved("packet",packet)},this.setTimeoutFn)}onerror(err){this.emitReserved("error",err)}socket(nsp,opts){
let socket=this.nsps[nsp];return socket?this._autoConnect&&!socket.active&&socket.connect():(socket=new Socket2(this,nsp,opts),this.nsps[nsp]=socket),socket}_destroy(socket){
let nsps=Object.keys(this.nsps);for(let nsp of nsps)if(this.nsps[nsp].active)return;this._close()}_packet(packet){let encodedPackets=this.encoder.encode(packet);
for(let i=0;i<encodedPackets.length;i++)this.engine.write(encodedPackets[i],packet.options)}cleanup(){this.subs.forEach(subDestroy=>subDestroy()),this.subs.length=
0,this.decoder.destroy()}_close(){this.skipReconnect=!0,this._reconnecting=!1,this.onclose("forced close")}disconnect(){return this._close()}onclose(reason,description){
var _a;this.cleanup(),(_a=this.engine)===null||_a===void 0||_a.close(),this.backoff.reset(),this._readyState="closed",this.emitReserved("close",reason,description),
this._reconnection&&!this.skipReconnect&&this.reconnect()}reconnect(){if(this._reconnecting||this.skipReconnect)return this;let self2=this;if(this.backoff.attempts>=
this._reconnectionAttempts)this.backoff.reset(),this.emitReserved("reconnect_failed"),this._reconnecting=!1;else{let delay=this.backoff.duration();this._reconnecting=
!0;let timer=this.setTimeoutFn(()=>{self2.skipReconnect||(this.emitReserved("reconnect_attempt",self2.backoff.attempts),!self2.skipReconnect&&self2.open(err=>{err?
(self2._reconnecting=!1,self2.reconnect(),this.emitReserved("reconnect_error",err)):self2.onreconnect()}))},delay);this.opts.autoUnref&&timer.unref(),this.subs.
push(()=>{this.clearTimeoutFn(timer)})}}onreconnect(){let attempt=this.backoff.attempts;this._reconnecting=!1,this.backoff.reset(),this.emitReserved("reconnect",
attempt)}};var cache={};function lookup2(uri,opts){typeof uri=="object"&&(opts=uri,uri=void 0),opts=opts||{};let parsed=url(uri,opts.path||"/socket.io"),source=parsed.source,
id=parsed.id,path=parsed.path,sameNamespace=cache[id]&&path in cache[id].nsps,newConnection=opts.forceNew||opts["force new connection"]||opts.multiplex===!1||sameNamespace,
io;return newConnection?io=new Manager(source,opts):(cache[id]||(cache[id]=new Manager(source,opts)),io=cache[id]),parsed.query&&!opts.query&&(opts.query=parsed.
queryKey),io.socket(parsed.path,opts)}Object.assign(lookup2,{Manager,Socket:Socket2,io:lookup2,connect:lookup2});function replaceAt(list,index,value2){let next=list.slice();return next[index]=value2,next}function toolIndex(parts3,toolCallId){for(let i=parts3.length-1;i>=0;i-=
1){let p=parts3[i];if(p.type==="tool"&&p.toolCallId===toolCallId)return i}return-1}function newTool(toolCallId,name,client){return{type:"tool",toolCallId,name,client,
state:"input-streaming",inputText:""}}function withTool(parts3,toolCallId,name,change){let at=toolIndex(parts3,toolCallId);if(at<0)return[...parts3,change(newTool(
toolCallId,name??"tool",!1))];let current=parts3[at],named=name&&current.name!==name?{...current,name}:current;return replaceAt(parts3,at,change(named))}function applyEvent(parts3,e){
switch(e.event){case"stream_chunk":case"stream_reasoning":{let type=e.event==="stream_chunk"?"text":"reasoning",content=typeof e.data.content=="string"?e.data.content:
"";if(!content)return parts3;let last=parts3[parts3.length-1];return last&&last.type===type?replaceAt(parts3,parts3.length-1,{type,text:last.text+content}):[...parts3,
{type,text:content}]}case"tool_call_start":{let d=e.data;return withTool(parts3,d.tool_call_id,d.name,t=>d.client?{...t,client:!0}:t)}case"tool_call_delta":{let d=e.
data;return withTool(parts3,d.tool_call_id,void 0,t=>({...t,inputText:t.inputText+(typeof d.delta=="string"?d.delta:"")}))}case"tool_call":{let d=e.data;return withTool(
parts3,d.tool_call_id,d.name,t=>({...t,client:t.client||d.client===!0,input:d.arguments,inputText:t.inputText||JSON.stringify(d.arguments??{}),state:t.state==="\
input-streaming"?"input-available":t.state}))}case"tool_approval_request":{let d=e.data;return withTool(parts3,d.tool_call_id,d.name,t=>({...t,input:d.arguments,
inputText:t.inputText||JSON.stringify(d.arguments??{}),state:"approval-requested",approval:{approvalId:d.approval_id,...typeof d.expires_at=="number"?{expiresAt:d.
expires_at}:{}}}))}case"tool_approval":{let d=e.data,at=-1;for(let i=parts3.length-1;i>=0;i-=1){let p=parts3[i];if(p.type==="tool"&&p.approval?.approvalId===d.approval_id){
at=i;break}}if(at<0)return parts3;let t=parts3[at];return replaceAt(parts3,at,{...t,state:d.approved?"approval-responded":"output-denied",approval:{...t.approval,
approved:d.approved,decidedBy:d.decided_by??null,...typeof d.reason=="string"?{reason:d.reason}:{}}})}case"tool_result":{let d=e.data,failed=d.error!==void 0&&d.
error!==null;return withTool(parts3,d.tool_call_id,d.name,t=>{let{output:_o,error:_e,...rest}=t;return{...rest,state:failed?t.state==="output-denied"?"output-de\
nied":"output-error":"output-available",...failed?{error:String(d.error)}:{output:d.output},...typeof d.duration_ms=="number"?{durationMs:d.duration_ms}:{}}})}case"\
stream_reset":return parts3}}function partsFromWire(wire,content){if(!Array.isArray(wire)||wire.length===0)return content?[{type:"text",text:content}]:[];let parts3=[];
for(let p of wire){if(!p||typeof p!="object")continue;let w=p;switch(w.type){case"text":case"reasoning":{let text=typeof w.content=="string"?w.content:"";if(!text)
break;let type=w.type,last=parts3[parts3.length-1];last&&last.type===type?parts3[parts3.length-1]={type,text:last.text+text}:parts3.push({type,text});break}case"\
redacted_reasoning":{let last=parts3[parts3.length-1];(!last||last.type!=="redacted_reasoning")&&parts3.push({type:"redacted_reasoning"});break}case"tool_call":{
let id=String(w.tool_call_id);parts3=withTool(parts3,id,String(w.name??"tool"),t=>({...t,client:t.client||w.client===!0,input:w.arguments,inputText:JSON.stringify(
w.arguments??{}),state:"input-available"}));break}case"tool_result":{let id=String(w.tool_call_id),failed=w.error!==void 0&&w.error!==null;parts3=withTool(parts3,
id,typeof w.name=="string"?w.name:void 0,t=>({...t,state:failed?"output-error":"output-available",...failed?{error:String(w.error)}:{output:w.output}}));break}default:
break}}return parts3}function mergeLiveDetails(stored,live){let liveTools=new Map;for(let p of live)p.type==="tool"&&liveTools.set(p.toolCallId,p);return liveTools.
size===0?stored:stored.map(p=>{if(p.type!=="tool")return p;let l=liveTools.get(p.toolCallId);return l?{...p,client:p.client||l.client,...l.approval?{approval:l.
approval}:{},...l.durationMs!==void 0&&p.durationMs===void 0?{durationMs:l.durationMs}:{},state:l.state==="output-denied"&&p.state==="output-error"?"output-deni\
ed":p.state}:p})}function textOf(parts3){let text="";for(let p of parts3)p.type==="text"&&(text+=p.text);return text}function reasoningOf(parts3){let pieces=[];
for(let p of parts3)p.type==="reasoning"&&pieces.push(p.text);return pieces.join(`

`)}function firstSeq(e){let d=e.data;return typeof d.first_seq=="number"?d.first_seq:d.seq}var AnswerTracker=class{conversationId;streamId;messageId;parentId;assistant;lastSeq=0;log=[];parts=[];lossy=!1;resuming=!1;ended=!1;mine=!1;cancelling=!1;branched=!1;retry=null;joinedApproval;joinedToolCall;#view=null;constructor(conversationId,streamId){
this.conversationId=conversationId,this.streamId=streamId}offer(e){let seq=e.data.seq;if(typeof seq!="number"||this.ended)return"duplicate";let first=firstSeq(e);
return seq<=this.lastSeq?"duplicate":first!==this.lastSeq+1&&(!this.lossy||first<=this.lastSeq)?"gap":e.event==="stream_reset"?this.#reset(e):(this.log.push(e),
this.lastSeq=seq,this.parts=applyEvent(this.parts,e),this.changed(),"applied")}#reset(e){let after=typeof e.data.after_seq=="number"?e.data.after_seq:0,straddling=this.
log.find(x=>firstSeq(x)<=after&&x.data.seq>after);if(straddling){let keepBefore=firstSeq(straddling);return this.log=this.log.filter(x=>x.data.seq<keepBefore),this.
lastSeq=keepBefore-1,this.#refold(),"gap"}return this.log=this.log.filter(x=>x.data.seq<=after),this.log.push(e),this.lastSeq=e.data.seq,this.retry={afterSeq:after,
...typeof e.data.attempt=="number"?{attempt:e.data.attempt}:{},...typeof e.data.reason=="string"?{reason:e.data.reason}:{}},this.#refold(),"applied"}#refold(){let parts3=[];
for(let x of this.log)parts3=applyEvent(parts3,x);this.parts=parts3,this.changed()}changed(){this.#view=null}replay(){return[{event:"stream_start",data:{conversation_id:this.
conversationId,stream_id:this.streamId,...this.messageId!==void 0?{message_id:this.messageId}:{},...this.parentId!==void 0?{parent_id:this.parentId}:{},...this.
assistant!==void 0?{assistant:this.assistant}:{},status:"streaming"}},...this.log]}view(){if(this.#view)return this.#view;let v={conversationId:this.conversationId,
streamId:this.streamId,...this.messageId!==void 0?{messageId:this.messageId}:{},...this.parentId!==void 0?{parentId:this.parentId}:{},...this.assistant!==void 0?
{assistant:this.assistant}:{},status:"streaming",parts:this.parts,text:textOf(this.parts),reasoning:reasoningOf(this.parts),lastSeq:this.lastSeq,resuming:this.resuming,
lossy:this.lossy,retry:this.retry,mine:this.mine,cancelling:this.cancelling};return this.#view=Object.freeze(v),this.#view}};var MarieError=class _MarieError extends Error{code;event;retryable;constructor(code,message,options={}){super(message),this.name="MarieError",this.code=code,options.
event!==void 0&&(this.event=options.event),options.retryable!==void 0&&(this.retryable=options.retryable)}static from(value2,event){if(value2 instanceof _MarieError)
return value2;if(value2&&typeof value2=="object"){let v=value2,code=typeof v.code=="string"?v.code:"error",message=typeof v.message=="string"?v.message:typeof v.
error=="string"?v.error:"request failed",ev=typeof v.event=="string"?v.event:event;return new _MarieError(code,message,{event:ev,retryable:typeof v.retryable=="\
boolean"?v.retryable:void 0})}return new _MarieError("error",String(value2),{event})}};function isMarieError(value2,code){return value2 instanceof MarieError&&(code===
void 0||value2.code===code)}var NUMBERED_EVENTS=["stream_chunk","stream_reasoning","tool_call_start","tool_call_delta","tool_call","tool_approval_request","tool_approval","tool_result","st\
ream_reset"];var Store=class{#snapshot;#listeners=new Set;constructor(initial){this.#snapshot=initial}subscribe=listener=>(this.#listeners.add(listener),()=>{this.#listeners.
delete(listener)});getSnapshot=()=>this.#snapshot;setSnapshot(next){if(!Object.is(next,this.#snapshot)){this.#snapshot=next;for(let listener of[...this.#listeners])
try{listener()}catch(err){queueMicrotask(()=>{throw err})}}}};function randomId(prefix=""){let bytes=new Uint8Array(12),c=globalThis.crypto;if(c&&typeof c.getRandomValues=="function")c.getRandomValues(bytes);else for(let i=0;i<
bytes.length;i+=1)bytes[i]=Math.floor(Math.random()*256);return prefix+Array.from(bytes,b=>b.toString(16).padStart(2,"0")).join("")}function itemFromWire(c){return Object.
freeze({id:c.conversation_id,title:typeof c.title=="string"?c.title:null,...c.created_by!==void 0?{createdBy:c.created_by}:{},...typeof c.created_at=="number"?{
createdAt:c.created_at}:{},...typeof c.updated_at=="number"?{updatedAt:c.updated_at}:{},...c.last_message!==void 0?{lastMessage:c.last_message?Object.freeze({role:c.
last_message.role,preview:c.last_message.preview,createdAt:c.last_message.created_at}):null}:{},...c.model!==void 0?{model:c.model}:{},...c.answer_policy!==void 0?
{answerPolicy:c.answer_policy}:{},archived:c.archived===!0,unread:typeof c.unread=="number"?c.unread:0})}function infoFromWire(c){return Object.freeze({...itemFromWire(
c),...c.system_prompt!==void 0?{systemPrompt:c.system_prompt}:{},members:Object.freeze((Array.isArray(c.members)?c.members:[]).map(m=>Object.freeze({userId:m.user_id,
role:m.role}))),models:Object.freeze(Array.isArray(c.models)?[...c.models]:[]),...typeof c.max_system_prompt_chars=="number"?{maxSystemPromptChars:c.max_system_prompt_chars}:
{},assistants:Object.freeze((Array.isArray(c.assistants)?c.assistants:[]).map(a=>Object.freeze({name:a.name,model:a.model??null})))})}function waitFor(store,predicate,timeoutMs=1e4){
return new Promise((resolve,reject)=>{let now=store.getSnapshot();if(predicate(now)){resolve(now);return}let unsubscribe=()=>{},timer=setTimeout(()=>{unsubscribe(),
reject(new Error(`waitFor: no snapshot satisfied ${String(predicate).slice(0,160)} within ${timeoutMs} ms`))},timeoutMs);unsubscribe=store.subscribe(()=>{let s=store.
getSnapshot(),ok=!1;try{ok=predicate(s)}catch(err){clearTimeout(timer),unsubscribe(),reject(err);return}ok&&(clearTimeout(timer),unsubscribe(),resolve(s))})})}var TYPING_REPEAT_MS=2e3,TYPING_HIDE_MS=6e3;function messageFromWire(m){let parts3=partsFromWire(m.parts,typeof m.content=="string"?m.content:"");return{id:String(
m.message_id),role:m.role,content:m.role==="assistant"&&Array.isArray(m.parts)&&m.parts.length?textOf(parts3)||m.content||"":m.content??"",parentId:m.parent_id===
void 0||m.parent_id===null?null:String(m.parent_id),parts:parts3,...m.user_id!==void 0?{userId:m.user_id}:{},...m.assistant!==void 0?{assistant:m.assistant}:{},
...typeof m.created_at=="number"?{createdAt:m.created_at}:{},...Array.isArray(m.siblings)&&m.siblings.length>1?withBranch(m.siblings.map(String),String(m.message_id)):
{},...Array.isArray(m.attachments)&&m.attachments.length?{attachments:m.attachments}:{},...m.role==="assistant"?{status:"complete"}:{}}}function withBranch(siblings,id){
let index=siblings.indexOf(id);return index<0?{siblings}:{siblings,branch:{index,count:siblings.length,previousId:index>0?siblings[index-1]:null,nextId:index<siblings.
length-1?siblings[index+1]:null}}}var EMPTY=Object.freeze([]),Conversation=class _Conversation extends Store{id;#host;#joined=!1;#joining=null;#created=null;#closed=null;#messages=EMPTY;#historyLoaded=!1;#historyLoads=0;#historyGen=0;#hasOlder=!1;#addedLog=[];#trackers=new Map;#own=new Map;#gone=new Set;#queue=[];#sending=[];#typing=new Map;#typingSentAt=0;#members=EMPTY;#info=null;#infoGen=0;#unread=0;#readMarks=Object.
freeze({});#lastError=null;#mark={target:null,sent:null,busy:!1};#ranCalls=new Set;#runningCalls=new Set;#deferredCalls=[];#answerListeners=new Set;constructor(id,host){
super(_Conversation.#empty(id,host)),this.id=id,this.#host=host}static#empty(id,host){return Object.freeze({id,joined:!1,joining:!1,connected:host.isConnected,resuming:!1,
created:null,closed:null,historyLoaded:!1,loadingHistory:!1,hasOlder:!1,messages:EMPTY,running:null,answers:EMPTY,pendingApprovals:EMPTY,pendingToolCalls:EMPTY,
queue:EMPTY,sending:EMPTY,typingUsers:EMPTY,budget:host.budget(),members:EMPTY,info:null,title:null,assistants:EMPTY,unread:0,readMarks:Object.freeze({}),lastError:null})}commit(){
let prev=this.getSnapshot(),answers=[...this.#trackers.values()].filter(t=>!t.ended).map(t=>t.view()),sameAnswers=answers.length===prev.answers.length&&answers.
every((a,i)=>a===prev.answers[i]),pendingApprovals=[],pendingToolCalls=[];for(let t of this.#trackers.values()){if(t.ended)continue;let approvals=new Set,calls=new Set;
for(let p of t.parts)p.type==="tool"&&(p.state==="approval-requested"&&p.approval?(approvals.add(p.approval.approvalId),pendingApprovals.push({conversationId:this.
id,streamId:t.streamId,approvalId:p.approval.approvalId,toolCallId:p.toolCallId,name:p.name,arguments:p.input,...p.approval.expiresAt!==void 0?{expiresAt:p.approval.
expiresAt}:{}})):p.client&&p.state==="input-available"&&(calls.add(p.toolCallId),pendingToolCalls.push({conversationId:this.id,streamId:t.streamId,toolCallId:p.
toolCallId,name:p.name,arguments:p.input,mine:this.#own.has(t.streamId),running:this.#runningCalls.has(p.toolCallId)})));let ja=t.joinedApproval;ja&&!approvals.
has(ja.approval_id)&&!t.parts.some(p=>p.type==="tool"&&p.approval?.approvalId===ja.approval_id)&&pendingApprovals.push({conversationId:this.id,streamId:t.streamId,
approvalId:ja.approval_id,toolCallId:ja.tool_call_id,name:ja.name,arguments:ja.arguments,...typeof ja.expires_at=="number"?{expiresAt:ja.expires_at}:{}});let jc=t.
joinedToolCall;jc&&!calls.has(jc.tool_call_id)&&!t.parts.some(p=>p.type==="tool"&&p.toolCallId===jc.tool_call_id)&&pendingToolCalls.push({conversationId:this.id,
streamId:t.streamId,toolCallId:jc.tool_call_id,name:jc.name,arguments:jc.arguments,...typeof jc.expires_at=="number"?{expiresAt:jc.expires_at}:{},mine:this.#own.
has(t.streamId),running:this.#runningCalls.has(jc.tool_call_id)})}let typing=[...this.#typing.keys()],sending=this.#sending.map(({claimed:_c,...s})=>s),info=this.#info,
next={id:this.id,joined:this.#joined,joining:this.#joining!==null,connected:this.#host.isConnected,resuming:answers.some(a=>a.resuming),created:this.#created,closed:this.#closed,
historyLoaded:this.#historyLoaded,loadingHistory:this.#historyLoads>0,hasOlder:this.#hasOlder,messages:this.#messages,running:answers[0]??null,answers:sameAnswers?
prev.answers:Object.freeze(answers),pendingApprovals:sameList(prev.pendingApprovals,pendingApprovals)?prev.pendingApprovals:Object.freeze(pendingApprovals),pendingToolCalls:sameList(
prev.pendingToolCalls,pendingToolCalls)?prev.pendingToolCalls:Object.freeze(pendingToolCalls),queue:sameList(prev.queue,this.#queue)?prev.queue:Object.freeze([...this.#queue]),
sending:sameList(prev.sending,sending)?prev.sending:Object.freeze(sending),typingUsers:sameList(prev.typingUsers,typing)?prev.typingUsers:Object.freeze(typing),
budget:this.#host.budget(),members:this.#members,info,title:info?info.title:null,assistants:info?info.assistants:EMPTY,unread:this.#unread,readMarks:this.#readMarks,
lastError:this.#lastError};shallowEqual(prev,next)||this.setSnapshot(Object.freeze(next))}join(){if(this.#joining)return this.#joining;let joining=(async()=>{try{
let ack=await this.#host.request("join_conversation",{conversation_id:this.id});this.#onJoined(ack);let details=this.refreshInfo().catch(()=>{});return this.#host.
refreshUsage(),await this.loadHistory().catch(()=>{}),await details,ack}catch(err){let e=MarieError.from(err,"join_conversation");throw this.#lastError=e,(e.code===
"not_found"||e.code==="forbidden")&&this.#host.listDrop(this.id),e}finally{this.#joining=null,this.commit()}})();return this.#joining=joining,this.commit(),joining}async leave(){
this.#joined=!1,this.#clearLive(!1),this.commit(),await this.#host.request("leave_conversation",{conversation_id:this.id})}async send(message,options={}){this.#joined||
await this.join();let clientMessageId=options.clientMessageId??randomId("c-"),tools=this.#host.toolsFor(options),specs=Object.entries(tools).map(([name,t])=>({name,
description:t.description,parameters:t.parameters})),payload={conversation_id:this.id,message,stream:options.stream??!0,client_message_id:clientMessageId};options.
onBusy&&(payload.on_busy=options.onBusy),options.answer!==void 0&&(payload.answer=options.answer),options.attachments&&options.attachments.length&&(payload.attachments=
[...options.attachments]),specs.length&&(payload.client_tools=specs);let pending={clientMessageId,message,attachments:options.attachments?[...options.attachments]:
[],claimed:!1};this.#sending.push(pending),this.commit();try{let ack=await this.#host.sendRequest(payload);return ack.stream_id&&this.#claimStream(ack.stream_id,
tools),typeof ack.queued=="number"&&ack.stream_id&&this.#addQueued({conversation_id:this.id,stream_id:ack.stream_id,message_id:ack.message_id,user_id:this.#host.
userId??void 0,message,position:ack.queued}),sendResult(ack)}catch(err){let e=MarieError.from(err,"send_message");throw e.code==="budget_exceeded"&&this.#host.refreshUsage(),
e}finally{this.#sending=this.#sending.filter(s=>s!==pending),this.commit()}}async cancel(streamId){let target=streamId??this.getSnapshot().running?.streamId,tracker=target?
this.#trackers.get(target):void 0,mark=cancelling=>{tracker?(tracker.cancelling=cancelling,tracker.changed()):target&&this.#setCancelling(target,cancelling),this.
commit()};mark(!0);try{await this.#host.request("cancel_stream",target?{conversation_id:this.id,stream_id:target}:{conversation_id:this.id})}catch(err){throw mark(
!1),MarieError.from(err,"cancel_stream")}}mentions(text){let names=new Map((this.#info?this.#info.assistants:[]).map(a=>[a.name.toLowerCase(),a.name])),found=[];
for(let m of String(text).matchAll(/(?:^|\s)@([A-Za-z0-9_-]+)/g)){let name=names.get(m[1].toLowerCase());name!==void 0&&!found.includes(name)&&found.push(name)}
return found}willAnswer(text,answer){if(answer!==void 0)return answer;let policy=this.#info?.answerPolicy;return policy==="never"?!1:policy!=="mention"||this.mentions(
text).length>0}approve(approvalId,approved,reason){let payload={conversation_id:this.id,approval_id:approvalId,approved};return reason!==void 0&&(payload.reason=
reason),this.#host.request("approve_tool",payload)}submitToolResult(toolCallId,result){this.#ranCalls.add(toolCallId);let payload={conversation_id:this.id,tool_call_id:toolCallId};
return result.error!==void 0?payload.error=String(result.error):payload.output=result.output===void 0?null:result.output,this.#host.request("submit_tool_result",
payload)}async edit(messageId,message){let ack=await this.#host.request("edit_message",{conversation_id:this.id,message_id:messageId,message,stream:!0});return ack.
stream_id&&this.#claimStream(ack.stream_id,this.#host.toolsFor({}),!0),sendResult(ack)}async regenerate(messageId){let payload={conversation_id:this.id,stream:!0};
messageId!==void 0&&(payload.message_id=messageId);let ack=await this.#host.request("regenerate",payload);return ack.stream_id&&this.#claimStream(ack.stream_id,
this.#host.toolsFor({}),!0),sendResult(ack)}switchBranch(messageId){return this.#host.request("switch_branch",{conversation_id:this.id,message_id:messageId})}async loadHistory(){
let gen=++this.#historyGen,since=this.#addedLog.length;this.#historyLoads+=1,this.commit();try{let limit=this.#host.historyLimit,ack=await this.#host.request("g\
et_history",{conversation_id:this.id,limit});if(gen!==this.#historyGen)return this.#messages;let got=Array.isArray(ack.messages)?ack.messages:[],messages=got.map(
messageFromWire),old=new Map(this.#messages.map(m=>[m.id,m]));messages=messages.map(m=>carryLive(m,old.get(m.id)));let have=new Set(messages.map(m=>m.id));for(let id of this.#addedLog.
slice(since)){let m=old.get(id);m&&!have.has(id)&&(messages.push(m),have.add(id))}return this.#messages=Object.freeze(this.#cutForRunning(messages)),this.#hasOlder=
got.length>=limit&&limit>0,this.#historyLoaded=!0,this.#messages}finally{this.#historyLoads-=1,this.#historyLoads===0&&(this.#addedLog=[]),this.commit()}}async loadOlder(){
let first=this.#messages[0];if(!first)return this.loadHistory();let limit=this.#host.historyLimit,ack=await this.#host.request("get_history",{conversation_id:this.
id,before:first.id,limit}),got=(Array.isArray(ack.messages)?ack.messages:[]).map(messageFromWire),have=new Set(this.#messages.map(m=>m.id)),older=got.filter(m=>!have.
has(m.id));return this.#hasOlder=got.length>=limit&&limit>0,older.length&&(this.#messages=Object.freeze([...older,...this.#messages])),this.commit(),older}async refreshInfo(){
let gen=++this.#infoGen,ack=await this.#host.request("get_conversation",{conversation_id:this.id}),info=infoFromWire(ack);if(this.#closed)return info;if(gen===this.#infoGen){
let prev=this.#info;prev&&prev.updatedBy!==void 0&&sameSettings(prev,info)&&(info=Object.freeze({...info,updatedBy:prev.updatedBy})),this.#info=info;let members=info.
members.map(m=>m.userId),all=[...new Set([...members,...this.#members])].filter(u=>members.includes(u));all.length&&(this.#members=Object.freeze(all)),this.commit()}
return this.#host.listUpsert(info),info}async update(changes){let payload={conversation_id:this.id};changes.title!==void 0&&(payload.title=changes.title),changes.
model!==void 0&&(payload.model=changes.model),changes.systemPrompt!==void 0&&(payload.system_prompt=changes.systemPrompt),changes.answerPolicy!==void 0&&(payload.
answer_policy=changes.answerPolicy);let ack=await this.#host.request("update_conversation",payload),patch={...infoFromWire(ack),updatedBy:this.#host.userId};return this.#info=
this.#info?Object.freeze({...this.#info,...patch,members:this.#info.members,models:this.#info.models,assistants:this.#info.assistants,archived:this.#info.archived,
unread:this.#info.unread}):Object.freeze(patch),this.commit(),this.#host.listUpsert(this.#info),this.#info}async archive(archived=!0){let ack=await this.#host.request(
"archive_conversation",{conversation_id:this.id,archived});return this.#host.listSetArchived(this.id,typeof ack.archived=="boolean"?ack.archived:archived),ack}delete(){
return this.#host.request("delete_conversation",{conversation_id:this.id})}invite(userId){return this.#host.request("invite",{conversation_id:this.id,user_id:userId})}removeMember(userId){
return this.#host.request("remove_member",{conversation_id:this.id,user_id:userId})}export(){return this.#host.request("export_conversation",{conversation_id:this.
id})}async markRead(messageId){let target=messageId??lastStoredId(this.#messages);if(!target)return;this.#unread=0,this.#host.listSetUnread(this.id,0),this.commit();
let mark=this.#mark;if(mark.target=target,!mark.busy){mark.busy=!0;try{for(;mark.target!==mark.sent;){let next=mark.target;mark.sent=next,await this.#host.request(
"mark_read",{conversation_id:this.id,message_id:next}).catch(()=>{})}}finally{mark.busy=!1}}}typing(isTyping){if(!this.#joined||!this.#host.isConnected)return;let now=Date.
now();isTyping&&now-this.#typingSentAt<TYPING_REPEAT_MS||!isTyping&&this.#typingSentAt===0||(this.#typingSentAt=isTyping?now:0,this.#host.request("typing",{conversation_id:this.
id,typing:isTyping}).catch(()=>{}))}observeAnswers(listener){return this.#answerListeners.add(listener),()=>{this.#answerListeners.delete(listener)}}replayAnswer(streamId){
let t=this.#trackers.get(streamId);return t&&!t.ended?t.replay():null}runsTool(streamId,name){if(!this.#host.autoRunTools)return!1;let own=this.#own.get(streamId),
tools=own?own.tools:this.#sending.length>0?this.#host.toolsFor({}):null;return!!(tools&&typeof tools[name]?.execute=="function")}isMine(streamId){return this.#own.
has(streamId)}heldPositions(){let held={};for(let t of this.#trackers.values())!t.ended&&!t.lossy&&(held[t.streamId]=t.lastSeq);return held}get isJoined(){return this.#joined}onDisconnected(){
for(let timer of this.#typing.values())clearTimeout(timer);this.#typing.clear(),this.#typingSentAt=0;for(let t of this.#trackers.values())t.resuming&&(t.resuming=
!1,t.changed());this.commit()}onFreshSession(){if(!this.#joined&&!this.#joining){this.commit();return}this.#joined=!1,this.commit(),this.join().catch(()=>{})}onRestored(restored,active){
if(!this.#joined){this.commit();return}if(!restored){this.#joined=!1,this.commit(),this.join().catch(()=>{});return}let running=new Set;for(let s of active){if(running.
add(s.stream_id),this.#gone.has(s.stream_id))continue;let t=this.#tracker(s.stream_id);s.resumed||this.#resume(t)}for(let t of this.#trackers.values())!t.ended&&
!running.has(t.streamId)&&this.#resume(t);this.commit(),this.loadHistory().catch(()=>{})}handle(event,data){if(!(!data||typeof data!="object"))switch(event){case"\
message_added":return this.#onMessageAdded(data);case"queued":return this.#addQueued(data),this.commit();case"stream_start":return this.#onStreamStart(data);case"\
stream_end":return this.#onStreamEnd(data);case"stream_error":return this.#onStreamError(data);case"message_response":return this.#onMessageResponse(data);case"\
user_typing":return this.#onTyping(data);case"user_joined":typeof data.user_id=="string"&&!this.#members.includes(data.user_id)&&(this.#members=Object.freeze([...this.#members,
data.user_id]),this.commit());return;case"user_left":this.#info&&this.refreshInfo().catch(()=>{});return;case"read":typeof data.user_id=="string"&&data.message_id!==
void 0&&(this.#readMarks=Object.freeze({...this.#readMarks,[data.user_id]:String(data.message_id)}),this.commit());return;case"branch_switched":this.loadHistory().
catch(()=>{});return;case"conversation_updated":return this.#onUpdated(data);case"conversation_deleted":return this.#close("deleted",data.deleted_by??null);case"\
removed":return this.#close("removed",data.removed_by??null);case"left":return this.#joined=!1,this.commit();case"error":return this.#lastError=MarieError.from(
data),this.commit();default:if(NUMBERED_EVENTS.includes(event))return this.#onNumbered({event,data})}}#onJoined(ack){this.#joined=!0,this.#closed=null,typeof ack.
created=="boolean"&&(this.#created=ack.created);let members=(Array.isArray(ack.members)?ack.members:[]).map(m=>typeof m=="string"?m:m&&typeof m.user_id=="string"?
m.user_id:null).filter(m=>typeof m=="string"),me=this.#host.userId;me&&!members.includes(me)&&members.push(me),this.#members=Object.freeze(members);let listed=this.#host.
listUnread(this.id);if(listed!==void 0&&(this.#unread=listed),Array.isArray(ack.queued)){this.#queue=[];for(let q of ack.queued)this.#addQueued({...q,conversation_id:this.
id})}let active=ack.active_stream;if(active&&typeof active.stream_id=="string"&&!this.#gone.has(active.stream_id)){let t=this.#tracker(active.stream_id);active.
pending_approval&&(t.joinedApproval=active.pending_approval),active.pending_tool_call&&(t.joinedToolCall=active.pending_tool_call),t.changed(),this.#resume(t)}for(let t of this.#trackers.
values())!t.ended&&(!active||t.streamId!==active.stream_id)&&this.#resume(t);this.commit()}#tracker(streamId){let t=this.#trackers.get(streamId);return t||(t=new AnswerTracker(
this.id,streamId),t.mine=this.#own.has(streamId),this.#trackers.set(streamId,t),this.#removeQueued(streamId,!1)),t}#claimStream(streamId,tools,branched=!1){this.#own.
has(streamId)||this.#own.set(streamId,{tools});let t=this.#trackers.get(streamId);t&&(t.mine=!0,branched&&(t.branched=!0),t.changed());let waiting=this.#deferredCalls.
filter(c=>c.streamId===streamId);this.#deferredCalls=this.#deferredCalls.filter(c=>c.streamId!==streamId);for(let c of waiting)this.#maybeRunTool(c.streamId,c.toolCallId,
c.name,c.arguments);this.#deferredCalls.length&&this.#sending.length===0&&(this.#deferredCalls=[]),this.commit()}#emitAnswer(e){for(let l of[...this.#answerListeners])
try{l(e)}catch(err){queueMicrotask(()=>{throw err})}}#onStreamStart(data){let streamId=data.stream_id;if(typeof streamId!="string"||this.#gone.has(streamId))return;
this.#removeQueued(streamId,!1);let isNew=!this.#trackers.has(streamId),t=this.#tracker(streamId);if(typeof data.message_id=="string"&&(t.messageId=data.message_id),
data.parent_id!==void 0&&(t.parentId=data.parent_id===null?null:String(data.parent_id)),typeof data.assistant=="string"&&data.assistant&&(t.assistant=data.assistant),
t.changed(),isNew&&this.#historyLoaded){let parent=t.parentId??null,last=lastStoredId(this.#messages);if(parent!==null&&parent!==last){let at=this.#messages.findIndex(
m=>m.id===parent);at>=0?(this.#messages=Object.freeze(this.#messages.slice(0,at+1)),t.branched=!0):this.loadHistory().catch(()=>{})}}this.commit(),this.#emitAnswer(
{event:"stream_start",data})}#onNumbered(e){let streamId=e.data.stream_id;if(typeof streamId!="string"||this.#gone.has(streamId))return;let t=this.#tracker(streamId),
result=t.offer(e);if(result==="gap"){t.lossy||this.#resume(t),this.commit();return}if(result!=="duplicate"){if(e.event==="tool_call"){let id=e.data.tool_call_id;
(e.data.client===!0||t.parts.some(p=>p.type==="tool"&&p.toolCallId===id&&p.client))&&this.#maybeRunTool(streamId,id,e.data.name,e.data.arguments)}this.commit(),
this.#emitAnswer(e)}}#resume(t){if(t.resuming||t.lossy||t.ended||!this.#host.isConnected)return;t.resuming=!0,t.changed();let from=t.lastSeq;this.#host.request(
"resume_stream",{conversation_id:this.id,stream_id:t.streamId,last_seq:from}).then(()=>{t.resuming=!1,t.changed(),this.commit()},err=>{t.resuming=!1,t.changed();
let e=MarieError.from(err,"resume_stream");if(e.code==="disconnected"||e.code==="timeout"||e.code==="closed"){this.commit();return}t.lossy=!0,this.commit(),this.#verifyRunning(
t)}),this.commit()}#verifyRunning(t){this.#host.request("join_conversation",{conversation_id:this.id}).then(ack=>{t.ended||(!ack.active_stream||ack.active_stream.
stream_id!==t.streamId)&&(t.ended=!0,this.#trackers.delete(t.streamId),this.#gone.add(t.streamId),this.commit(),this.loadHistory().catch(()=>{}))}).catch(()=>{})}#onStreamEnd(data){
let streamId=data.stream_id;if(typeof streamId!="string")return;let t=this.#trackers.get(streamId);if(!t&&(this.#gone.has(streamId)||this.#queue.some(q=>q.streamId===
streamId)||data.status==="cancelled"&&!data.full_content)){this.#removeQueued(streamId,!0),this.commit();return}let tracker=t??this.#tracker(streamId);tracker.ended=
!0,this.#trackers.delete(streamId),this.#gone.add(streamId),this.#removeQueued(streamId,!0);let content=typeof data.full_content=="string"?data.full_content:textOf(
tracker.parts),id=typeof data.message_id=="string"?data.message_id:tracker.messageId,status=data.status??"complete",stored=parts2(data,content,tracker.parts),saidNothing=!content&&
stored.length===0;if(id&&!this.#messages.some(m=>m.id===id)&&!(saidNothing&&status!=="complete")){let msg={id,role:"assistant",content,parentId:lastStoredId(this.#messages),
parts:stored,status,streamId,createdAt:Date.now(),...tracker.assistant?{assistant:tracker.assistant}:{},...typeof data.finish_reason=="string"?{finishReason:data.
finish_reason}:{},...data.usage?{usage:data.usage}:{}};this.#append(msg),this.#unread+=1,this.#host.listActivity(this.id,"assistant",content)}this.commit(),this.#emitAnswer(
{event:"stream_end",data}),this.#host.refreshUsage(),tracker.branched&&this.loadHistory().catch(()=>{})}#onStreamError(data){let streamId=data.stream_id;if(typeof streamId!=
"string")return;let t=this.#trackers.get(streamId);if(data.code==="resume_unavailable"&&t&&!t.ended||!t&&this.#gone.has(streamId))return;let error=MarieError.from(
{code:data.code??"error",message:data.error??"the answer failed",retryable:data.retryable});if(this.#lastError=error,!t&&this.#queue.some(q=>q.streamId===streamId)){
this.#removeQueued(streamId,!0),this.commit(),this.#emitAnswer({event:"stream_error",data});return}let tracker=t??this.#tracker(streamId);tracker.ended=!0,this.#trackers.
delete(streamId),this.#gone.add(streamId);let content=textOf(tracker.parts),id=tracker.messageId??`stream:${streamId}`;this.#messages.some(m=>m.id===id)||this.#append(
{id,role:"assistant",content,parentId:lastStoredId(this.#messages),parts:tracker.parts,status:"error",streamId,createdAt:Date.now(),error:{code:error.code,message:error.
message,...error.retryable!==void 0?{retryable:error.retryable}:{}},...tracker.assistant?{assistant:tracker.assistant}:{}}),this.commit(),this.#emitAnswer({event:"\
stream_error",data}),this.#host.refreshUsage()}#onMessageResponse(data){if(typeof data.message_id=="string"){if(typeof data.stream_id=="string"&&(this.#trackers.
delete(data.stream_id),this.#gone.add(data.stream_id),this.#removeQueued(data.stream_id,!0)),!this.#messages.some(m=>m.id===data.message_id)){let content=typeof data.
message=="string"?data.message:"";this.#append({id:data.message_id,role:"assistant",content,parentId:lastStoredId(this.#messages),parts:content?[{type:"text",text:content}]:
[],status:"complete",createdAt:Date.now(),...typeof data.stream_id=="string"?{streamId:data.stream_id}:{},...typeof data.assistant=="string"?{assistant:data.assistant}:
{}}),this.#unread+=1,this.#host.listActivity(this.id,"assistant",content)}this.commit(),this.#host.refreshUsage()}}#onMessageAdded(data){let wire=data.message;if(!wire||
wire.message_id===void 0||wire.message_id===null)return;let m=messageFromWire(wire);for(let q of this.#queue)q.messageId===m.id&&this.#removeQueued(q.streamId,!1);
if(m.userId!==void 0&&m.userId===this.#host.userId){let pending=this.#sending.find(s=>!s.claimed&&s.message===m.content);pending&&(pending.claimed=!0,this.#sending=
this.#sending.filter(s=>s!==pending))}if(this.#messages.some(x=>x.id===m.id)){this.commit();return}let last=lastStoredId(this.#messages);if(this.#historyLoaded&&
m.parentId!==last){let at=m.parentId===null?-1:this.#messages.findIndex(x=>x.id===m.parentId);(m.parentId===null||at>=0)&&(this.#messages=Object.freeze(this.#messages.
slice(0,at+1))),this.#append(m),this.loadHistory().catch(()=>{})}else this.#append(m);this.#unread+=1,this.#host.listActivity(this.id,m.role,m.content),this.commit()}#append(m){
this.#messages=Object.freeze([...this.#messages,m]),this.#addedLog.push(m.id)}#cutForRunning(messages){let out=messages;for(let t of this.#trackers.values()){if(t.
ended||!t.parentId||t.messageId&&out.some(m=>m.id===t.messageId))continue;let at=out.findIndex(m=>m.id===t.parentId);at>=0&&at<out.length-1&&out[at+1].role==="a\
ssistant"&&(out=out.slice(0,at+1))}return out}#addQueued(q){let streamId=q.stream_id;if(typeof streamId!="string"||this.#gone.has(streamId)||this.#trackers.has(
streamId)||this.#queue.some(x=>x.streamId===streamId))return;let me=this.#host.userId;this.#queue.push({streamId,...q.message_id!==void 0&&q.message_id!==null?{
messageId:String(q.message_id)}:{},...q.user_id!==void 0?{userId:q.user_id}:{},message:typeof q.message=="string"?q.message:"",position:this.#queue.length+1,mine:q.
user_id!==void 0&&q.user_id===me||this.#own.has(streamId),cancelling:!1})}#setCancelling(streamId,cancelling){this.#queue=this.#queue.map(q=>q.streamId===streamId&&
q.cancelling!==cancelling?{...q,cancelling}:q)}#removeQueued(streamId,gone){gone&&this.#gone.add(streamId),!(this.#queue.findIndex(q=>q.streamId===streamId)<0)&&
(this.#queue=this.#queue.filter(q=>q.streamId!==streamId).map((q,i)=>q.position===i+1?q:{...q,position:i+1}))}#onTyping(data){let user=data.user_id;if(!(typeof user!=
"string"||user===this.#host.userId)){if(clearTimeout(this.#typing.get(user)),data.typing){let timer=setTimeout(()=>{this.#typing.delete(user),this.commit()},TYPING_HIDE_MS);
timer.unref?.(),this.#typing.set(user,timer)}else this.#typing.delete(user);this.commit()}}#onUpdated(data){this.#info&&(this.#info=Object.freeze({...this.#info,
...data.title!==void 0?{title:data.title}:{},...data.model!==void 0?{model:data.model}:{},...data.answer_policy!==void 0?{answerPolicy:data.answer_policy}:{},...typeof data.
updated_at=="number"?{updatedAt:data.updated_at}:{},...data.updated_by!==void 0?{updatedBy:data.updated_by}:{}}),this.commit()),this.#joined&&this.refreshInfo().
catch(()=>{})}#close(reason,by){this.#closed=Object.freeze({reason,by}),this.#joined=!1,this.#clearLive(!0),this.commit()}#clearLive(forGood){for(let t of this.#trackers.
values())t.ended=!0,forGood&&this.#gone.add(t.streamId);this.#trackers.clear(),this.#queue=[];for(let timer of this.#typing.values())clearTimeout(timer);this.#typing.
clear()}#maybeRunTool(streamId,toolCallId,name,args){if(!this.#host.autoRunTools||this.#ranCalls.has(toolCallId))return;let own=this.#own.get(streamId);if(!own){
this.#sending.length>0&&this.#deferredCalls.push({streamId,toolCallId,name,arguments:args});return}let tool=own.tools[name];if(!tool||typeof tool.execute!="func\
tion")return;this.#ranCalls.add(toolCallId),this.#runningCalls.add(toolCallId),this.commit();let execute=tool.execute;(async()=>{let result;try{result={output:await execute(
args,{conversationId:this.id,streamId,toolCallId,name})}}catch(err){result={error:err instanceof Error?err.message:String(err)}}try{await this.submitToolResult(
toolCallId,result)}catch(err){let e=MarieError.from(err);e.code!=="conflict"&&e.code!=="not_found"&&(this.#lastError=e,this.#ranCalls.delete(toolCallId))}finally{
this.#runningCalls.delete(toolCallId),this.commit()}})()}};function sendResult(ack){return Object.freeze({messageId:String(ack.message_id),...typeof ack.stream_id==
"string"?{streamId:ack.stream_id}:{},duplicate:ack.duplicate===!0,...typeof ack.queued=="number"?{queued:ack.queued}:{},answered:ack.answered!==!1})}function parts2(data,content,live){
return Array.isArray(data.parts)&&data.parts.length?mergeLiveDetails(partsFromWire(data.parts,content),live):content?[{type:"text",text:content}]:[]}function carryLive(fresh,old){
return!old||old.role!=="assistant"?fresh:{...fresh,parts:mergeLiveDetails(fresh.parts,old.parts),...old.status!==void 0?{status:old.status}:{},...old.finishReason!==
void 0?{finishReason:old.finishReason}:{},...old.usage!==void 0?{usage:old.usage}:{},...old.streamId!==void 0?{streamId:old.streamId}:{}}}function lastStoredId(messages){
for(let i=messages.length-1;i>=0;i-=1){let m=messages[i];if(m.status!=="error")return m.id}return null}function sameSettings(a,b){return a.title===b.title&&(a.model??
null)===(b.model??null)&&a.answerPolicy===b.answerPolicy}function sameList(a,b){if(a.length!==b.length)return!1;for(let i=0;i<a.length;i+=1){let x=a[i],y=b[i];if(x!==
y)if(x&&y&&typeof x=="object"&&typeof y=="object"){if(!shallowEqual(x,y))return!1}else return!1}return!0}function shallowEqual(a,b){let ka=Object.keys(a),kb=Object.
keys(b);if(ka.length!==kb.length)return!1;for(let k of ka)if(!Object.is(a[k],b[k]))return!1;return!0}var PAGE=30;function byActivity(a,b){let ta=a.updatedAt??0,tb=b.updatedAt??0;return ta!==tb?tb-ta:a.id<b.id?-1:a.id>b.id?1:0}var ConversationList=class extends Store{#host;#items=new Map;#nextBefore=null;#pages=0;#loads=0;#loading=0;#loaded=!1;#query="";#archived=!1;#error=null;#refreshTimer=null;#patchedAt=new Map;#dropped=new Map;constructor(host){
super(Object.freeze({items:Object.freeze([]),loaded:!1,loading:!1,hasMore:!1,query:"",archived:!1,error:null})),this.#host=host}#commit(){let items=[...this.#items.
values()].sort(byActivity),prev=this.getSnapshot(),next={items:items.length===prev.items.length&&items.every((it,i)=>it===prev.items[i])?prev.items:Object.freeze(
items),loaded:this.#loaded,loading:this.#loading>0,hasMore:this.#nextBefore!==null,query:this.#query,archived:this.#archived,error:this.#error};Object.keys(next).
every(k=>Object.is(next[k],prev[k]))||this.setSnapshot(Object.freeze(next))}async load(options={}){options.query!==void 0&&(this.#query=options.query),options.archived!==
void 0&&(this.#archived=options.archived),await this.#read({more:!1,merge:!1})}async loadMore(){this.#nextBefore!==null&&await this.#read({more:!0,merge:!1})}async refresh(){
await this.#read({more:!1,merge:!0})}refreshSoon(){this.#loaded&&(this.#refreshTimer&&clearTimeout(this.#refreshTimer),this.#refreshTimer=setTimeout(()=>{this.#refreshTimer=
null,this.refresh().catch(()=>{})},300),this.#refreshTimer.unref?.())}async#read({more,merge}){let gen=++this.#loads,payload={limit:PAGE};this.#archived&&(payload.
archived=!0);let query=this.#query.trim();query&&(payload.query=query.slice(0,200)),more&&this.#nextBefore&&(payload.before=this.#nextBefore),this.#loading+=1,this.#commit();
try{let ack=await this.#host.request("list_conversations",payload);if(gen!==this.#loads)return;this.#error=null;let got=(Array.isArray(ack.conversations)?ack.conversations:
[]).map(itemFromWire).map(c=>(this.#patchedAt.get(c.id)??-1)>=gen?this.#items.get(c.id)??c:c).filter(c=>{let dropped=this.#dropped.get(c.id);return dropped===void 0?
!0:dropped>=gen?!1:(this.#dropped.delete(c.id),!0)}),nextBefore=typeof ack.next_before=="string"?ack.next_before:null;if(merge){if(nextBefore===null&&this.#pages<=
1){let ids=new Set(got.map(c=>c.id));for(let id of[...this.#items.keys()])ids.has(id)||this.#items.delete(id)}for(let c of got)this.#items.set(c.id,c);this.#pages<=
1&&(this.#nextBefore=nextBefore)}else{more||(this.#items.clear(),this.#pages=0),this.#pages+=1;for(let c of got)this.#items.set(c.id,c);this.#nextBefore=nextBefore}
this.#loaded=!0}catch(err){throw gen===this.#loads&&(this.#error=MarieError.from(err,"list_conversations")),MarieError.from(err,"list_conversations")}finally{this.#loading-=
1,this.#commit()}}get(id){return this.#items.get(id)}#fits(item,listed){if(item.archived!==this.#archived)return!1;let query=this.#query.trim().toLowerCase();return!query||
listed?!0:typeof item.title=="string"&&item.title.toLowerCase().includes(query)}upsert(info){if(!this.#loaded||this.#dropped.has(info.id))return;let old=this.#items.
get(info.id),item=Object.freeze({id:info.id,title:info.title,...info.createdBy!==void 0?{createdBy:info.createdBy}:old?.createdBy!==void 0?{createdBy:old.createdBy}:
{},...info.createdAt!==void 0?{createdAt:info.createdAt}:old?.createdAt!==void 0?{createdAt:old.createdAt}:{},...info.updatedAt!==void 0?{updatedAt:info.updatedAt}:
old?.updatedAt!==void 0?{updatedAt:old.updatedAt}:{},...info.lastMessage!==void 0?{lastMessage:info.lastMessage}:old?.lastMessage!==void 0?{lastMessage:old.lastMessage}:
{},...info.model!==void 0?{model:info.model}:old?.model!==void 0?{model:old.model}:{},...info.answerPolicy!==void 0?{answerPolicy:info.answerPolicy}:old?.answerPolicy!==
void 0?{answerPolicy:old.answerPolicy}:{},archived:info.archived,unread:old?old.unread:info.unread});if(!this.#fits(item,!!old)){old&&this.#items.delete(info.id),
this.#commit();return}this.#patchedAt.set(info.id,this.#loads),this.#items.set(info.id,item),this.#commit()}#patch(id,change){let item=this.#items.get(id);item&&
(this.#patchedAt.set(id,this.#loads),this.#items.set(id,Object.freeze(change(item))),this.#commit())}setUnread(id,unread){this.#patch(id,item=>item.unread===unread?
item:{...item,unread})}drop(id){this.#dropped.set(id,this.#loads),this.#items.delete(id)&&this.#commit()}setArchived(id,archived){if(archived!==this.#archived){
this.drop(id);return}this.#items.has(id)?this.#patch(id,item=>item.archived===archived?item:{...item,archived}):this.#loaded&&(this.#dropped.delete(id),this.#fetch(
id))}noteActivity(id,role,text,unreadDelta){if(!this.#loaded)return;let item=this.#items.get(id);if(!item){this.#fetch(id);return}let now=Math.max(Date.now(),(item.
updatedAt??0)+1);this.#patch(id,it=>({...it,updatedAt:now,lastMessage:Object.freeze({role,preview:Array.from(text).slice(0,140).join(""),createdAt:now}),unread:Math.
min(100,it.unread+unreadDelta)}))}#fetch(id){this.#host.isConnected&&this.#host.request("get_conversation",{conversation_id:id}).then(ack=>this.upsert(infoFromWire(
ack))).catch(()=>{})}handle(event,data,inRoom){if(!data||typeof data!="object"||typeof data.conversation_id!="string")return;let id=data.conversation_id;switch(event){case"\
conversation_updated":{let d=data;this.#dropped.delete(id),this.#items.has(id)?this.#patch(id,it=>({...it,...d.title!==void 0?{title:d.title}:{},...d.model!==void 0?
{model:d.model}:{},...d.answer_policy!==void 0?{answerPolicy:d.answer_policy}:{},...typeof d.updated_at=="number"?{updatedAt:Math.max(d.updated_at,it.updatedAt??
0)}:{}})):this.#loaded&&!this.#archived&&this.#fetch(id),inRoom||this.refreshSoon();return}case"conversation_created":this.#dropped.delete(id),this.#loaded&&!this.#items.
has(id)&&this.#fetch(id);return;case"conversation_deleted":case"removed":this.drop(id);return;default:return}}};var ConnectionStore=class extends Store{set(change){let prev=this.getSnapshot(),next={...prev,...change};Object.keys(next).every(k=>Object.is(next[k],prev[k]))||
this.setSnapshot(Object.freeze(next))}},UsageStore=class extends Store{set(budget){let prev=this.getSnapshot();prev&&budget&&prev.used===budget.used&&prev.limit===
budget.limit&&prev.period===budget.period&&prev.resetsAt===budget.resetsAt||this.setSnapshot(budget)}},CONVERSATION_EVENTS=new Set(["message_added","queued","st\
ream_start","stream_chunk","stream_reasoning","tool_call_start","tool_call_delta","tool_call","tool_approval_request","tool_approval","tool_result","stream_rese\
t","stream_end","stream_error","message_response","user_typing","user_joined","user_left","read","branch_switched","conversation_updated","conversation_deleted",
"removed","left"]),LIST_EVENTS=new Set(["conversation_updated","conversation_created","conversation_deleted","removed"]),MarieClient=class{socket;connection;conversations;usage;#token;#url;#ackTimeoutMs;#historyLimit;#autoRunTools;#convs=new Map;#tools=new Map;#inflight=new Set;#closed=!1;#clientToolsUnsupported=!1;#usageGen=0;#usageTimer=null;#host;constructor(options){
if(!options||typeof options.token!="string"&&typeof options.token!="function")throw new TypeError("MarieClient: `token` is required (a string or a function)");this.#token=
options.token,this.#url=options.url,this.#ackTimeoutMs=options.ackTimeoutMs??1e4,this.#historyLimit=Math.max(0,Math.min(200,options.historyLimit??100)),this.#autoRunTools=
options.autoRunTools??!0,this.connection=new ConnectionStore(Object.freeze({status:"idle",userId:null,session:null,restored:!1,error:null})),this.usage=new UsageStore(
null);let socketOptions={...options.socketOptions??{},autoConnect:!1,auth:cb=>this.#auth(cb)};this.socket=options.url?lookup2(options.url,socketOptions):lookup2(
socketOptions);let client=this;this.#host={get userId(){return client.userId},get isConnected(){return client.socket.connected},get historyLimit(){return client.#historyLimit},
get autoRunTools(){return client.#autoRunTools},request:(event,payload)=>this.request(event,payload),sendRequest:payload=>this.#sendRequest(payload),budget:()=>this.
usage.getSnapshot(),refreshUsage:()=>this.refreshUsage(),toolsFor:options2=>this.#toolsFor(options2),listUnread:id=>this.conversations.get(id)?.unread,listSetUnread:(id,unread)=>this.
conversations.setUnread(id,unread),listUpsert:info=>this.conversations.upsert(info),listDrop:id=>this.conversations.drop(id),listSetArchived:(id,archived)=>this.
conversations.setArchived(id,archived),listActivity:(id,role,text)=>this.conversations.noteActivity(id,role,text,1)};let listHost={get userId(){return client.userId},
get isConnected(){return client.socket.connected},request:(event,payload)=>this.request(event,payload)};this.conversations=new ConversationList(listHost),this.usage.
subscribe(()=>{for(let c of this.#convs.values())c.commit()}),this.#wire(),(options.autoConnect??!0)&&this.connect()}get userId(){return this.connection.getSnapshot().
userId}get connected(){return this.socket.connected}connect(){this.#closed||this.socket.connected||this.socket.active||(this.connection.set({status:"connecting",
error:null}),this.socket.connect())}close(){this.#closed=!0;for(let f of this.#inflight)f.settled=!0,f.reject(new MarieError("closed","the client was closed",{event:f.
event}));this.#inflight.clear(),this.#usageTimer&&clearTimeout(this.#usageTimer),this.socket.disconnect(),this.connection.set({status:"closed"});for(let c of this.#convs.
values())c.onDisconnected()}httpUrl(path){let base=this.#url??globalThis.location?.origin;if(!base)throw new MarieError("bad_request","no server url: pass `url`\
 to the MarieClient");return new URL(path,base).toString()}async#authorization(){let source=this.#token;return`Bearer ${typeof source=="function"?await source():
source}`}async#http(method,path,body,signal){let res=await fetch(this.httpUrl(path),{method,headers:{authorization:await this.#authorization()},...body!==void 0?
{body}:{},...signal?{signal}:{}});if(!res.ok){let err={code:res.status===404?"not_found":"error",message:`HTTP ${res.status}`};try{err=await res.json()}catch{}throw MarieError.
from(err)}return res.status===204?void 0:await res.json()}async uploadFile(conversationId,file,options={}){let form=new FormData;form.append("conversation_id",conversationId);
let name=options.name??file.name??"file";form.append("file",file,name);let r;try{r=options.onProgress&&typeof XMLHttpRequest=="function"?await this.#xhrPost("/a\
pi/chat/files",form,options.signal,options.onProgress):await this.#http("POST","/api/chat/files",form,options.signal)}catch(err){throw err instanceof MarieError?
err:options.signal?.aborted?new MarieError("aborted","the upload was cancelled"):new MarieError("network",`the upload broke off: ${err instanceof Error?err.message:
String(err)}`)}return Object.freeze({fileId:r.file_id,userId:r.user_id,conversationId:r.conversation_id,name:r.name,contentType:r.content_type,size:r.size,createdAt:r.
created_at})}async#xhrPost(path,body,signal,onProgress){let authorization=await this.#authorization();return new Promise((resolve,reject)=>{let xhr=new XMLHttpRequest;
if(xhr.open("POST",this.httpUrl(path)),xhr.setRequestHeader("authorization",authorization),xhr.upload.addEventListener("progress",e=>{e.lengthComputable&&e.total>
0&&onProgress(e.loaded,e.total)}),xhr.addEventListener("load",()=>{let json;try{json=JSON.parse(xhr.responseText)}catch{json=void 0}xhr.status>=200&&xhr.status<
300&&json&&typeof json=="object"?resolve(json):json&&typeof json=="object"&&typeof json.code=="string"?reject(MarieError.from(json)):reject(new MarieError(xhr.status===
404?"not_found":"error",`HTTP ${xhr.status}`))}),xhr.addEventListener("error",()=>reject(new MarieError("network","the upload broke off"))),xhr.addEventListener(
"abort",()=>reject(new MarieError("aborted","the upload was cancelled"))),signal){if(signal.aborted){reject(new MarieError("aborted","the upload was cancelled"));
return}signal.addEventListener("abort",()=>xhr.abort(),{once:!0})}xhr.send(body)})}async downloadFile(fileId,options={}){let res=await fetch(this.httpUrl(`/api/\
chat/files/${encodeURIComponent(fileId)}`),{headers:{authorization:await this.#authorization()},...options.signal?{signal:options.signal}:{}});if(!res.ok){let err={
code:res.status===404?"not_found":"error",message:`HTTP ${res.status}`};try{err=await res.json()}catch{}throw MarieError.from(err)}return res.blob()}async deleteFile(fileId){
await this.#http("DELETE",`/api/chat/files/${encodeURIComponent(fileId)}`)}conversation(id){let c=this.#convs.get(id);return c||(c=new Conversation(id,this.#host),
this.#convs.set(id,c)),c}async join(id){let c=this.conversation(id);return await c.join(),c}registerTool(name,tool){return this.#tools.set(name,tool),()=>{this.#tools.
get(name)===tool&&this.#tools.delete(name)}}get tools(){return this.#tools}on(event,listener){return this.socket.on(event,listener),()=>{this.socket.off(event,listener)}}async request(event,payload,options={}){
let timeoutMs=options.timeoutMs??this.#ackTimeoutMs;if(this.#closed)throw new MarieError("closed","the client was closed",{event});return this.socket.connected||
await this.#whenConnected(timeoutMs,event),new Promise((resolve,reject)=>{let entry={event,reject,settled:!1};this.#inflight.add(entry),this.socket.timeout(timeoutMs).
emit(event,payload===void 0?{}:payload,(err,res)=>{this.#inflight.delete(entry),!entry.settled&&(entry.settled=!0,err?reject(new MarieError("timeout",`no answer\
 to ${event} within ${timeoutMs} ms`,{event})):res&&(res.status==="ok"||res.status==="success")?resolve(res):reject(MarieError.from(res??{code:"error",message:`${event}\
 failed`},event)))})})}#whenConnected(timeoutMs,event){return this.socket.active||this.connect(),new Promise((resolve,reject)=>{let done=err=>{clearTimeout(timer),
this.socket.off("connect",onConnect),unsubscribe(),err?reject(err):resolve()},onConnect=()=>done(),unsubscribe=this.connection.subscribe(()=>{let s=this.connection.
getSnapshot();(s.status==="refused"||s.status==="closed")&&done(s.error??new MarieError(s.status==="closed"?"closed":"disconnected",`not connected (${s.status})`,
{event}))}),timer=setTimeout(()=>done(new MarieError("disconnected",`not connected within ${timeoutMs} ms`,{event})),timeoutMs);this.socket.on("connect",onConnect),
this.socket.connected&&done()})}async#sendRequest(payload){let body=payload;if(this.#clientToolsUnsupported&&"client_tools"in body){let{client_tools:_t,...rest}=body;
body=rest}try{return await this.request("send_message",body)}catch(err){if(err instanceof MarieError&&err.code==="bad_request"&&"client_tools"in body&&/client_tools/.
test(err.message)){this.#clientToolsUnsupported=!0;let{client_tools:_t,...rest}=body;return this.request("send_message",rest)}throw err}}#toolsFor(options){let tools={};
if(options.registeredTools!==!1)for(let[name,t]of this.#tools)tools[name]=t;return options.tools&&Object.assign(tools,options.tools),tools}refreshUsage(){this.#usageTimer||
this.#closed||(this.#usageTimer=setTimeout(()=>{this.#usageTimer=null,this.getUsage().catch(()=>{})},50),this.#usageTimer.unref?.())}async getUsage(){let gen=++this.#usageGen,
ack=await this.request("get_usage",{}),budget=Object.freeze({used:typeof ack.used=="number"?ack.used:0,limit:typeof ack.limit=="number"?ack.limit:null,period:typeof ack.
period=="string"?ack.period:null,resetsAt:typeof ack.resets_at=="number"?ack.resets_at:null});return gen===this.#usageGen&&this.usage.set(budget),budget}listConversations(options={}){
return this.request("list_conversations",options)}async getConversation(id){return infoFromWire(await this.request("get_conversation",{conversation_id:id}))}async getHistory(id,options={}){
return this.request("get_history",{conversation_id:id,...options})}send(id,message,options){return this.conversation(id).send(message,options)}cancel(id,streamId){
return this.conversation(id).cancel(streamId)}leave(id){return this.conversation(id).leave()}approveTool(id,approvalId,approved,reason){return this.conversation(
id).approve(approvalId,approved,reason)}submitToolResult(id,toolCallId,result){return this.conversation(id).submitToolResult(toolCallId,result)}editMessage(id,messageId,message){
return this.conversation(id).edit(messageId,message)}regenerate(id,messageId){return this.conversation(id).regenerate(messageId)}switchBranch(id,messageId){return this.
conversation(id).switchBranch(messageId)}updateConversation(id,changes){return this.conversation(id).update(changes)}archiveConversation(id,archived=!0){return this.
conversation(id).archive(archived)}deleteConversation(id){return this.conversation(id).delete()}invite(id,userId){return this.conversation(id).invite(userId)}removeMember(id,userId){
return this.conversation(id).removeMember(userId)}exportConversation(id){return this.conversation(id).export()}markRead(id,messageId){return this.conversation(id).
markRead(messageId)}typing(id,isTyping){return this.conversation(id).typing(isTyping)}resumeStream(id,streamId,lastSeq){return this.request("resume_stream",{conversation_id:id,
stream_id:streamId,last_seq:lastSeq})}announce(message){return this.request("system_announcement",{message})}#auth(cb){let source=this.#token;Promise.resolve().
then(()=>typeof source=="function"?source():source).then(token=>{let session=this.connection.getSnapshot().session;if(!session){cb({token});return}let lastSeqs={};
for(let c of this.#convs.values())c.isJoined&&Object.assign(lastSeqs,c.heldPositions());cb({token,previous_session:session,last_seqs:lastSeqs})},err=>{this.connection.
set({error:MarieError.from({code:"unauthorized",message:`no token: ${err instanceof Error?err.message:String(err)}`})}),cb({})})}#wire(){let socket=this.socket;
socket.on("connected",data=>{let hadSession=this.connection.getSnapshot().session!==null;if(this.connection.set({status:"connected",userId:data.user_id??null,session:data.
session??null,restored:!1,error:null}),hadSession)for(let c of this.#convs.values())c.onFreshSession();else for(let c of this.#convs.values())c.commit();this.conversations.
getSnapshot().loaded&&this.conversations.refresh().catch(()=>{})}),socket.on("reconnected",data=>{this.connection.set({status:"connected",userId:data.user_id??this.
userId,session:data.session??null,restored:!0,error:null});let rooms=new Set(Array.isArray(data.rooms)?data.rooms:[]),active=Array.isArray(data.active_streams)?
data.active_streams:[];for(let c of this.#convs.values())c.onRestored(rooms.has(c.id),active.filter(s=>s.conversation_id===c.id));this.conversations.getSnapshot().
loaded&&this.conversations.refresh().catch(()=>{})}),socket.on("connect_error",err=>{let code=err?.data?.code??err?.message??"error",error=this.connection.getSnapshot().
error??new MarieError(code,err?.message??code);socket.active?this.connection.set({status:"reconnecting",error:new MarieError(code,err?.message??code)}):this.connection.
set({status:"refused",error:error.code==="unauthorized"?error:new MarieError(code,err?.message??code)})}),socket.on("disconnect",()=>{if(!this.#closed){this.connection.
set({status:socket.active?"reconnecting":"disconnected"});for(let c of this.#convs.values())c.onDisconnected()}}),socket.on("error",data=>this.#onError(data)),socket.
onAny((event,data)=>this.#route(event,data))}#onError(data){if(!data||typeof data!="object")return;if(typeof data.conversation_id=="string"&&typeof data.stream_id==
"string"){this.#convs.get(data.conversation_id)?.handle("error",data);return}if(data.code==="unauthorized"&&this.connection.set({error:MarieError.from(data)}),typeof data.
event!="string")return;let waiting=[...this.#inflight].filter(f=>f.event===data.event&&!f.settled);if(waiting.length===1){let f=waiting[0];f.settled=!0,this.#inflight.
delete(f),f.reject(MarieError.from(data,data.event))}}#route(event,data){if(!data||typeof data!="object")return;let id=data.conversation_id;typeof id=="string"&&
(LIST_EVENTS.has(event)&&this.conversations.handle(event,data,this.#convs.get(id)?.isJoined??!1),CONVERSATION_EVENTS.has(event)&&this.#convs.get(id)?.handle(event,
data))}};function finishReason(reason){switch(reason){case void 0:case"stop":return"stop";case"length":case"budget":return"length";case"content_filter":return"content-fi\
lter";case"tool_calls":case"max_steps":return"tool-calls";case"interrupted":return"interrupted";default:return"other"}}var UIChunkMapper=class{#open=null;#inStep=!1;#afterTools=!1;#denied=!1;#started=!1;#begun=new Set;#parts=0;lastSeq=0;done=!1;constructor(options={}){
options.started&&(this.#started=!0)}#close(out){this.#open&&(out.push(this.#open.kind==="text"?{type:"text-end",id:this.#open.id}:{type:"reasoning-end",id:this.#open.
id}),this.#open=null)}#step(out){let afterTools=this.#afterTools;this.#afterTools=!1,afterTools&&this.#inStep&&(this.#close(out),out.push({type:"finish-step"}),
this.#inStep=!1),this.#inStep||(out.push({type:"start-step"}),this.#inStep=!0)}#begin(out,toolCallId,toolName){this.#begun.has(toolCallId)||(this.#begun.add(toolCallId),
out.push({type:"tool-input-start",toolCallId,toolName}))}#openPart(out,kind){if(this.#step(out),this.#open&&this.#open.kind===kind)return this.#open.id;this.#close(
out),this.#parts+=1;let id=`${kind}-${this.#parts}`;return out.push(kind==="text"?{type:"text-start",id}:{type:"reasoning-start",id}),this.#open={kind,id},id}pause(){
let out=[];return this.#close(out),this.#inStep&&out.push({type:"finish-step"}),this.#inStep=!1,out}map(e){let out=[];if(this.done)return out;if(e.event!=="stre\
am_start"&&e.event!=="stream_end"&&e.event!=="stream_error"&&typeof e.data.seq=="number"){if(e.data.seq<=this.lastSeq)return out;this.lastSeq=e.data.seq}switch(!this.#started&&
e.event!=="stream_start"&&(out.push({type:"start"}),this.#started=!0),e.event){case"stream_start":if(this.#started)break;this.#started=!0,out.push(typeof e.data.
message_id=="string"?{type:"start",messageId:e.data.message_id}:{type:"start"}),out.push({type:"start-step"}),this.#inStep=!0;break;case"stream_chunk":case"stre\
am_reasoning":{let kind=e.event==="stream_chunk"?"text":"reasoning",id=this.#openPart(out,kind),delta=typeof e.data.content=="string"?e.data.content:"";out.push(
kind==="text"?{type:"text-delta",id,delta}:{type:"reasoning-delta",id,delta});break}case"tool_call_start":this.#step(out),this.#close(out),this.#begin(out,e.data.
tool_call_id,e.data.name);break;case"tool_call_delta":this.#begun.has(e.data.tool_call_id)&&out.push({type:"tool-input-delta",toolCallId:e.data.tool_call_id,inputTextDelta:typeof e.
data.delta=="string"?e.data.delta:""});break;case"tool_call":this.#step(out),this.#close(out),this.#begin(out,e.data.tool_call_id,e.data.name),out.push({type:"t\
ool-input-available",toolCallId:e.data.tool_call_id,toolName:e.data.name,input:e.data.arguments??null});break;case"tool_approval_request":this.#close(out),out.push(
{type:"tool-approval-request",approvalId:e.data.approval_id,toolCallId:e.data.tool_call_id});break;case"tool_approval":this.#denied=e.data.approved!==!0,out.push(
{type:"tool-approval-response",approvalId:e.data.approval_id,approved:e.data.approved===!0,...typeof e.data.reason=="string"?{reason:e.data.reason}:{}});break;case"\
tool_result":{this.#close(out);let toolCallId=e.data.tool_call_id;this.#denied?(this.#denied=!1,out.push({type:"tool-output-denied",toolCallId})):e.data.error!==
void 0&&e.data.error!==null?out.push({type:"tool-output-error",toolCallId,errorText:String(e.data.error)}):out.push({type:"tool-output-available",toolCallId,output:e.
data.output??null}),this.#afterTools=!0;break}case"stream_reset":if(this.#afterTools)break;this.#open=null,out.push({type:"reset-step"});break;case"stream_end":
this.#close(out),this.#inStep&&out.push({type:"finish-step"}),this.#inStep=!1,out.push(e.data.status==="cancelled"||e.data.status==="interrupted"?{type:"abort",
reason:e.data.status}:{type:"finish",finishReason:finishReason(e.data.finish_reason)}),this.done=!0;break;case"stream_error":this.#close(out),out.push({type:"er\
ror",errorText:e.data.error??e.data.code??"the answer failed"}),this.done=!0;break}return out}};return __toCommonJS(page_exports);})();
